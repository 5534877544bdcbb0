"""The bench datasets, prepared once and reused while valid (``bench/work/``, git-ignored): the default 46-Gpx
wall and a 1-Gpx wall published into node roots, the 1-Gpx wall flattened to one image (for ``vips dzsave``)
and to a pyramidal tiled JPEG TIFF (for iipsrv), and the small wall of the proxy bench.

    .venv/bin/python -m bench.datasets [--work bench/work] [--rebuild]

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
from gigaformat.layout import DatasetDir
from tiler.dataset import LoadedDataset

WALLS = (46.0, 1.0, 0.2)  # gigapixels: the default wall, the export / iipsrv wall, the proxy bench's wall
FLAT_WALL = 1.0


def prepare(work: Path, rebuild: bool = False, seed: int = 1) -> dict:
    """Every bench dataset under ``work``; returns what was done, per dataset."""
    done: dict[str, dict] = {}
    with Children(work / "datasets-logs") as children:
        roots = {}
        for gigapixels in WALLS:
            reused = not rebuild and walls.wall_is_ready(work, gigapixels, seed)
            started = time.perf_counter()
            roots[gigapixels] = walls.prepare_wall(work, gigapixels, children, seed, rebuild=rebuild)
            done[f"wall {gigapixels:g} Gpx"] = {"path": str(roots[gigapixels]), "reused": reused,
                                               "seconds": time.perf_counter() - started}
        wall = walls.wall_folder(work, FLAT_WALL, seed)
        started = time.perf_counter()
        flat_stamp = walls.read_json(wall / "flat.json")
        ds = LoadedDataset.open(DatasetDir(roots[FLAT_WALL], walls.DATASET))
        flat = walls.flatten_wall(ds, wall)
        done[f"flat image {FLAT_WALL:g} Gpx (dzsave)"] = {
            "path": str(flat), "reused": flat_stamp == {"generation": ds.generation},
            "seconds": time.perf_counter() - started}
        del ds
        started = time.perf_counter()
        tif_stamp = walls.read_json(wall / "flat-tif.json")
        tif = walls.pyramid_tiff(flat, children)
        done[f"pyramidal TIFF {FLAT_WALL:g} Gpx (iipsrv)"] = {
            "path": str(tif), "reused": tif_stamp == walls.read_json(wall / "flat-tif.json"),
            "seconds": time.perf_counter() - started}
    for name, item in done.items():
        console.log(f"{name}: {'reused' if item['reused'] else 'built'} in {item['seconds']:.1f} s")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.datasets", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=WORK_DIR)
    parser.add_argument("--rebuild", action="store_true", help="build every dataset again")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    try:
        done = prepare(args.work.resolve(), args.rebuild)
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
