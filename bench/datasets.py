"""The bench datasets, prepared once and reused while valid (``bench/work/``, git-ignored): the default 46-Gpx
wall and a 1-Gpx wall published into node roots, the small wall of the proxy bench, and walls of distinct
covers (every item a cover of its own: 2 Gpx, and 0.2 Gpx for the quick run or 20 Gpx for the full one, each
pair 10x apart); the 1-Gpx and the 2-Gpx distinct walls flattened to one image (for ``vips dzsave``) and to a
pyramidal tiled JPEG TIFF (for iipsrv). A wall published by an older format is built again.

    .venv/bin/python -m bench.datasets [--work bench/work] [--rebuild] [--quick]

Prints one ``JSON {...}`` line: per dataset, its path, whether it was reused, and the seconds it took.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench import walls
from bench.processes import Children, stop_on_sigterm
from bench.progress import console
from bench.results import WORK_DIR
from bench.walls import WallSpec
from gigaformat.layout import DatasetDir
from tiler.dataset import LoadedDataset

W = WallSpec.parse
# the default wall, the export / iipsrv wall, the proxy bench's wall, the wall of distinct covers
WALLS = (W("46"), W("1"), W("0.2"), W("2d"))
QUICK_WALLS = (W("0.2d"),)  # 10x smaller than 2d: the pairs of the quick run (coldstart, publish)
FULL_WALLS = (W("20d"),)   # 10x larger than 2d: the pairs of the full run
FLAT_WALLS = (W("1"), W("2d"))


def prepare(work: Path, rebuild: bool = False, seed: int = 1, quick: bool = False) -> dict:
    """Every bench dataset under ``work``; returns what was done, per dataset."""
    done: dict[str, dict] = {}
    with Children(work / "datasets-logs") as children:
        roots = {}
        for spec in WALLS + (QUICK_WALLS if quick else FULL_WALLS):
            reused = not rebuild and spec.is_ready(work, seed)
            started = time.perf_counter()
            roots[spec] = spec.prepare(work, children, seed, rebuild)
            done[f"wall {spec.name}"] = {"path": str(roots[spec]), "reused": reused,
                                         "seconds": time.perf_counter() - started}
        for spec in [w for w in roots if w.all_distinct]:  # for the benches that put a wall into their S3
            reused = (spec.folder(work, seed) / "published.json").exists() and not rebuild
            started = time.perf_counter()
            copy = walls.published_copy(work, spec, children, seed)
            done[f"published copy {spec.name}"] = {"path": str(copy), "reused": reused,
                                                   "seconds": time.perf_counter() - started}
        for spec in FLAT_WALLS:
            wall = spec.folder(work, seed)
            started = time.perf_counter()
            flat_stamp = walls.read_json(wall / "flat.json")
            ds = LoadedDataset.open(DatasetDir(roots[spec], walls.DATASET))
            flat = walls.flatten_wall(ds, wall)
            done[f"flat image {spec.name} (dzsave)"] = {
                "path": str(flat), "reused": flat_stamp == {"generation": ds.generation},
                "seconds": time.perf_counter() - started}
            del ds
            started = time.perf_counter()
            tif_stamp = walls.read_json(wall / "flat-tif.json")
            tif = walls.pyramid_tiff(flat, children)
            done[f"pyramidal TIFF {spec.name} (iipsrv)"] = {
                "path": str(tif), "reused": tif_stamp == walls.read_json(wall / "flat-tif.json"),
                "seconds": time.perf_counter() - started}
    for name, item in done.items():
        console.log(f"{name}: {'reused' if item['reused'] else 'built'} in {item['seconds']:.1f} s")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.datasets", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=WORK_DIR)
    parser.add_argument("--rebuild", action="store_true", help="build every dataset again")
    parser.add_argument("--quick", action="store_true", help="the quick run's walls (not the full run's 20-Gpx)")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    try:
        done = prepare(args.work.resolve(), args.rebuild, quick=args.quick)
    except RuntimeError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("interrupted: every child process was stopped")
        return 130
    print("JSON " + json.dumps(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
