"""Random-tile HTTP throughput of ``tiler serve --workers 2`` beside IIPImage (iipsrv) serving the same canvas
(issue 8; issue 3's aim: as fast as the best C servers that only cut tiles out of a pre-built pyramid).

The 1-Gpx wall, published for us, and flattened once (not timed) to a pyramidal tiled JPEG TIFF for iipsrv
(``vips tiffsave --tile --pyramid --compression jpeg --Q 85``, 256-px tiles). Both sides answer DeepZoom URLs:
ours ``/tiles/covers_files/<level>/<x>_<y>.jpg``, iipsrv ``/fcgi-bin/iipsrv.fcgi?DeepZoom=<flat.tif>_files/
<level>/<x>_<y>.jpg``. For the deepest level and the level two below it (1:4), the same tiles from a fixed seed,
distinct as far as the level has tiles, are loaded on each side with the same load generator (wrk with a Lua
script of the paths, or the bounded Python client), alternating rounds, best round of each. Tile caches are off
on both sides. Ours answers a whole tile as ``/tiles/`` does (a stored JPEG as it is stored, a composed tile
encoded at q85); iipsrv 1.1 decodes its pyramid's JPEG tile and re-encodes it at q85. iipsrv runs as 2
processes (as many as our workers) behind one nginx worker. Before the load, a sanity check: the same paths on
both sides give 200, real JPEGs, of the same size (PSNR between them is printed).

    .venv/bin/python -m bench.iipsrv [--quick] [--seconds 10] [--rounds 2] [--results-dir DIR]

Needs Debian's ``iipimage-server``, ``nginx`` and ``libvips-tools`` (``make bench`` installs them).
"""

from __future__ import annotations

import argparse
import io
import random
import socket
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench import walls
from bench.bars import bar, format_bars
from bench.iipserver import FCGI_PATH, start_iipsrv, stop_iipsrv
from bench.load import run_load
from bench.machine import load_average, machine, tool_version
from bench.processes import Children, memory_row, run_and_report
from bench.progress import console
from bench.results import RESULTS_DIR, WORK_DIR, write_results
from bench.tables import format_table
from bench.tileserver import start_tiler_serve
from bench.walls import WallSpec
from gigaformat.layout import DatasetDir
from gigaformat.levels import Geometry
from tiler.dataset import LoadedDataset

SIDES = ("tiler serve", "iipsrv")


@dataclass(frozen=True)
class IipsrvBenchSettings:
    work: Path = WORK_DIR
    # the all-distinct wall (issue 14's bar: >= 1.5x iipsrv) and the default 1-Gpx wall (issue 3's aim)
    walls: tuple[WallSpec, ...] = (WallSpec(2.0, True), WallSpec(1.0))
    seed: int = 1
    jpeg_quality: int = 85
    connections: int = 16
    seconds: float = 10.0
    warmup_seconds: float = 2.0
    rounds: int = 2            # the sides alternate; the best round of each counts
    iipsrv_processes: int = 2  # as many as tiler serve's workers
    sanity_tiles: int = 24     # per level
    results_dir: Path | None = RESULTS_DIR

    def quick(self) -> IipsrvBenchSettings:
        return replace(self, walls=self.walls[:1], seconds=4.0, warmup_seconds=1.0, rounds=1, sanity_tiles=12)


def dz_max_level(g: Geometry) -> int:
    """DeepZoom's deepest level: ceil(log2(longest side)); our level z is DeepZoom's z + (this - top)."""
    return max(0, (max(g.width, g.height) - 1).bit_length())


def level_tiles(g: Geometry, z: int, count: int, seed: int, interior: bool = False) -> list[tuple[int, int]]:
    """``count`` tiles (x, y) of level ``z`` from a fixed seed: distinct, cycled if the level has fewer;
    ``interior`` leaves out the last column and row (whose size the two sides round differently)."""
    cols, rows = g.tile_counts(z)
    cols, rows = (cols - 1, rows - 1) if interior and cols > 1 and rows > 1 else (cols, rows)
    picks = random.Random(seed).sample(range(cols * rows), min(count, cols * rows))
    return [(i % cols, i // cols) for i in (picks * -(-count // len(picks)))[:count]]


def paths_for(side: str, level: int, tiles: list[tuple[int, int]], tif: Path) -> list[str]:
    if side == "tiler serve":
        return [f"/tiles/{walls.DATASET}_files/{level}/{x}_{y}.jpg" for x, y in tiles]
    return [f"{FCGI_PATH}?DeepZoom={tif}_files/{level}/{x}_{y}.jpg" for x, y in tiles]


def _decode(data: bytes) -> np.ndarray | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float64)
    except OSError:
        return None


def corner_sizes(bases: dict[str, str], level: int, corner: tuple[int, int], tif: Path) -> dict[str, object]:
    """The size of the last tile of a level on each side (for reference: iipsrv's TIFF pyramid floors odd
    level sizes where DeepZoom rounds up, so its last row or column can be a pixel short)."""
    sizes: dict[str, object] = {}
    with httpx.Client(timeout=30) as client:
        for side in SIDES:
            response = client.get(bases[side] + paths_for(side, level, [corner], tif)[0])
            pixels = _decode(response.content) if response.status_code == 200 else None
            sizes[side] = response.status_code if pixels is None else list(pixels.shape[1::-1])
    return sizes


def sanity_check(bases: dict[str, str], level: int, tiles: list[tuple[int, int]], tif: Path) -> dict:
    """Both sides answer each path with 200 and a JPEG of the same size; PSNR between the two."""
    problems, psnrs, sizes = [], [], set()
    with httpx.Client(timeout=30) as client:
        for x, y in tiles:
            got = {side: client.get(bases[side] + paths_for(side, level, [(x, y)], tif)[0]) for side in SIDES}
            pixels = {side: _decode(r.content) if r.status_code == 200 else None for side, r in got.items()}
            shapes = {side: None if p is None else p.shape[1::-1] for side, p in pixels.items()}
            if any(p is None for p in pixels.values()) or len(set(shapes.values())) != 1:
                problems.append(f"{level}/{x}_{y}: " + ", ".join(
                    f"{side} {got[side].status_code} {got[side].headers.get('content-type')} {shapes[side]}"
                    for side in SIDES))
                continue
            sizes.add(shapes["iipsrv"])
            mse = float(np.mean((pixels["tiler serve"] - pixels["iipsrv"]) ** 2))
            psnr = 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)
            psnrs.append(float(psnr))
    return {"level": level, "tiles": len(tiles), "mismatched": len(problems), "problems": problems[:10],
            "sizes": sorted(sizes), "psnr_db_min": min(psnrs, default=None),
            "psnr_db_median": float(np.median(psnrs)) if psnrs else None}


def measure_level(settings: IipsrvBenchSettings, children: Children, bases: dict[str, str], out: Path,
                  name: str, level: int, tiles: list[tuple[int, int]], warm: list[tuple[int, int]],
                  tif: Path) -> dict:
    rounds: dict[str, list[dict]] = {side: [] for side in SIDES}
    for n in range(settings.rounds):
        order = SIDES if n % 2 == 0 else SIDES[::-1]
        for side in order:
            slug = side.split()[0]
            run_load(children, bases[side], paths_for(side, level, warm, tif), out, f"warm-{name}-{slug}",
                     settings.connections, settings.warmup_seconds)
            result = run_load(children, bases[side], paths_for(side, level, tiles, tif), out, f"{name}-{slug}",
                              settings.connections, settings.seconds)
            result["load_average_after"] = load_average()
            rounds[side].append(result)
            console.log(f"{name} level {level}, {side}: {result['requests_per_s']:,.0f} requests/s, "
                        f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, non-200 {result['non200']}")
    best = {side: max(results, key=lambda r: r["requests_per_s"]) for side, results in rounds.items()}
    return {"level": level, "distinct_tiles": len(set(tiles)), "rounds": rounds, "best": best,
            "ratio": best["tiler serve"]["requests_per_s"] / best["iipsrv"]["requests_per_s"]}


def memcached_listening() -> bool:
    """iipsrv would use a memcached on localhost:11211 as a second cache; we note whether one answers."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 11211)) == 0


def measure_wall(s: IipsrvBenchSettings, children: Children, tmp: Path, spec: WallSpec) -> dict:
    """Both servers on one wall: the sanity check, then the loads at the deepest and the 1:4 level."""
    root = spec.prepare(s.work, children, s.seed)
    ds = LoadedDataset.open(DatasetDir(root, walls.DATASET))
    g = ds.geometry
    flat = walls.flatten_wall(ds, root.parent)
    tif = walls.pyramid_tiff(flat, children, s.jpeg_quality)
    del ds
    doc: dict = {"canvas": {"width": g.width, "height": g.height, "tiff": str(tif), "tiff_bytes": tif.stat().st_size}}
    deepest = dz_max_level(g)
    levels = {"deepest": (deepest, g.top), "1:4": (deepest - 2, g.top - 2)}
    server, ours = start_tiler_serve(children, root, f"serve-iipsrv-{spec}.log", 2,
                                     extra=("--cache-mb", "0", "--jpeg-quality", str(s.jpeg_quality)))
    folder = tmp / str(spec)
    folder.mkdir(mode=0o755)
    iips, nginx, theirs = start_iipsrv(children, folder, s.iipsrv_processes, s.jpeg_quality, cache_mb=0)
    bases = {"tiler serve": ours, "iipsrv": theirs}
    try:
        doc["sanity"] = {name: sanity_check(bases, level, level_tiles(g, z, s.sanity_tiles, s.seed + 7, True), tif)
                         for name, (level, z) in levels.items()}
        for name, (level, z) in levels.items():
            cols, rows = g.tile_counts(z)
            doc["sanity"][name]["last_tile"] = corner_sizes(bases, level, (cols - 1, rows - 1), tif)
        for name, check in doc["sanity"].items():
            console.log(f"{spec.name} sanity {name}: {check['tiles'] - check['mismatched']} of {check['tiles']} "
                        f"paths give JPEGs of the same size on both sides {check['sizes'][:3]}; PSNR min "
                        f"{check['psnr_db_min']:.1f} dB")
        doc["levels"] = {}
        for name, (level, z) in levels.items():
            tiles = level_tiles(g, z, 100_000, s.seed)
            warm = level_tiles(g, z, 5_000, s.seed + 1)
            doc["levels"][name] = measure_level(s, children, bases, folder / "load", f"{spec}-{name}", level, tiles,
                                                warm, tif)
        doc["memory"] = [memory_row(f"tiler serve --workers 2 (iipsrv comparison, {spec.name})", "after the loads",
                                    server.pid),
                         *(memory_row(f"iipsrv process {i + 1} ({spec.name})", "after the loads", p.pid)
                           for i, p in enumerate(iips)),
                         memory_row(f"nginx in front of iipsrv ({spec.name})", "after the loads", nginx.pid)]
    finally:
        stop_iipsrv(children, iips, nginx)
        children.stop(server)
    return doc


def run(settings: IipsrvBenchSettings) -> dict:
    s = settings
    doc: dict = {"bench": "iipsrv", "issue": 8, "settings": {k: str(v) for k, v in asdict(s).items()},
                 "machine": machine(), "tools": {"iipsrv": tool_version(["dpkg-query", "-W", "-f",
                                                                         "iipimage-server ${Version}",
                                                                         "iipimage-server"]),
                                                 "nginx": tool_version(["nginx", "-v"]),
                                                 "wrk": tool_version(["wrk", "--version"])},
                 "memcached_listening": memcached_listening(), "walls": {}}
    s.work.mkdir(parents=True, exist_ok=True)
    with Children(s.work / "iipsrv-logs") as children, \
            tempfile.TemporaryDirectory(prefix="iipsrv-bench-", dir=s.work) as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx's workers run as an unprivileged user
        for spec in s.walls:
            doc["walls"][spec.name] = measure_wall(s, children, tmp, spec)
    first = next(iter(doc["walls"].values()))
    doc.update(canvas=first["canvas"], levels=first["levels"], sanity=first["sanity"],  # the plots' panels
               memory=[row for wall in doc["walls"].values() for row in wall["memory"]])
    doc["load_average_end"] = load_average()
    doc["bars"] = collect_bars(doc)
    if s.results_dir is not None:
        doc["results_file"] = str(write_results("iipsrv", doc, s.results_dir))
    return doc


def collect_bars(doc: dict) -> list[dict]:
    bars = []
    for wall_name, wall in doc["walls"].items():
        for name, lv in wall["levels"].items():
            best = lv["best"]
            what = f"{wall_name}: random tiles at the {name} level (DeepZoom {lv['level']}), 2 workers"
            ours, theirs = best["tiler serve"]["requests_per_s"], best["iipsrv"]["requests_per_s"]
            bars.append(bar(what, ours, "requests/s", 1.0, at_least=True, anchor="iipsrv", anchor_figure=theirs,
                            key="iipsrv.throughput", kind="aim"))
            if "distinct" in wall_name:
                bars.append(bar(what, ours, "requests/s", 1.5, at_least=True, anchor="iipsrv", anchor_figure=theirs,
                                key="iipsrv.throughput-distinct"))
    bad = sum(r["non200"] + r["socket_errors"] + r["timeouts"] for wall in doc["walls"].values()
              for lv in wall["levels"].values() for results in lv["rounds"].values() for r in results)
    bars.append(bar("non-200 and socket errors, both sides", bad, "responses", 0, key="iipsrv.errors", kind="check"))
    mismatched = sum(c["mismatched"] for wall in doc["walls"].values() for c in wall["sanity"].values())
    bars.append(bar("paths without the same-size JPEG on both sides", mismatched, "paths", 0, key="iipsrv.sanity",
                    kind="check"))
    return bars


def print_report(doc: dict) -> None:
    for wall_name, wall in doc["walls"].items():
        rows = []
        for name, lv in wall["levels"].items():
            for side, r in lv["best"].items():
                rows.append((f"{name} ({lv['level']})", side, f"{r['requests_per_s']:,.0f}", f"{r['p50_ms']:.2f}",
                             f"{r['p99_ms']:.2f}", r["non200"], r["socket_errors"] + r["timeouts"],
                             f"{lv['ratio']:.2f}×" if side == "tiler serve" else "anchor"))
        print(f"\n{wall_name} wall: random DeepZoom tiles of the {wall['canvas']['width']} x "
              f"{wall['canvas']['height']} canvas, best of {doc['settings']['rounds']} alternating rounds")
        print(format_table(("level", "server", "requests/s", "p50 ms", "p99 ms", "non-200", "errors", "ratio"), rows))
        for name, check in wall["sanity"].items():
            print(f"sanity {name}: {check['tiles'] - check['mismatched']}/{check['tiles']} same-size JPEGs, PSNR min "
                  f"{check['psnr_db_min']:.1f}, median {check['psnr_db_median']:.1f} dB; last tile "
                  f"{check['last_tile']}" + "".join(f"\n  {p}" for p in check["problems"]))
    print(format_table(("process", "RSS MB", "PSS MB"),
                       [(m["process"], f"{m['rss_mb']:.0f}", f"{m['pss_mb']:.0f}") for m in doc["memory"]]))
    print("\n" + format_bars(doc["bars"]))
    if "results_file" in doc:
        print(f"results: {doc['results_file']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.iipsrv", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per side and level, one round")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--work", type=Path, default=IipsrvBenchSettings.work, help="walls, logs, scratch")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results JSON goes")
    args = parser.parse_args(argv)
    settings = IipsrvBenchSettings(work=args.work.resolve(), results_dir=args.results_dir)
    settings = settings.quick() if args.quick else settings
    if args.seconds is not None:
        settings = replace(settings, seconds=args.seconds)
    if args.rounds is not None:
        settings = replace(settings, rounds=args.rounds)
    return run_and_report(run, print_report, settings)


if __name__ == "__main__":
    sys.exit(main())
