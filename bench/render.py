"""The render bar of issue 3, every figure beside its anchor, measured in one run.

On the default 46-Gpx wall and a 1-Gpx wall: the JPEG-encode floor, cold-tile latency per level in
one process, HTTP throughput of ``tiler serve --workers 2``; on the 1-Gpx wall, ``tiler render`` vs
``vips dzsave``; on the 46-Gpx wall, the server's memory after 100,000 random tiles. Prints tables
with ratios and pass/fail, writes ``bench/results/<timestamp>-render.json``.

    .venv/bin/python -m bench.render [--quick] [--work bench/work] [--steps latency,http,export,memory]

From the suite: ``from bench.render import RenderBenchSettings, run; doc = run(RenderBenchSettings())``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyvips

from bench import pagecache, stats, walls
from bench.bars import bar, format_bars
from bench.load import run_load
from bench.machine import load_average, machine, tool_version
from bench.processes import Children, memory_of, stop_on_sigterm
from bench.progress import console, progress_bar
from bench.results import RESULTS_DIR, WORK_DIR, write_results
from bench.tables import format_table
from bench.tileserver import cache_lookups, start_tiler_serve
from bench.walls import DATASET, TILER, WallSpec
from gigaformat.layout import DatasetDir
from gigaformat.levels import Geometry
from tiler.dataset import LoadedDataset
from tiler.encode import encode_tile

STEPS = ("latency", "cache", "http", "export", "memory")
W = WallSpec.parse


@dataclass(frozen=True)
class RenderBenchSettings:
    work: Path = WORK_DIR
    # floor and cold tiles run on each wall; HTTP on http_walls, the cold-cache variant on cache_walls
    walls: tuple[WallSpec, ...] = (W("46"), W("1"), W("2d"))
    http_walls: tuple[WallSpec, ...] = (W("46"), W("1"))
    cache_walls: tuple[WallSpec, ...] = (W("2d"), W("46"))
    export_wall: WallSpec = W("1")
    memory_wall: WallSpec = W("46")
    seed: int = 1
    samples_per_level: int = 300
    cache_samples_per_level: int = 200  # cold-cache samples (the data files evicted before each)
    floor_encodes: int = 1000
    connections: int = 16
    http_seconds: float = 10.0
    http_warmup_seconds: float = 3.0
    memory_checkpoints: tuple[int, ...] = (10_000, 100_000)  # requests served when memory is read
    memory_seconds: float = 900.0  # bound on the whole memory load
    export_rounds: int = 3  # dzsave and tiler render alternate; the best round of each counts
    steps: tuple[str, ...] = STEPS
    rebuild: bool = False
    results_dir: Path | None = RESULTS_DIR

    def quick(self) -> RenderBenchSettings:
        return replace(self, samples_per_level=100, cache_samples_per_level=60, floor_encodes=500, http_seconds=5.0,
                       http_warmup_seconds=2.0, cache_walls=self.cache_walls[:1],  # the chains wall's: 20 s
                       memory_checkpoints=(10_000, 20_000), memory_seconds=300.0, export_rounds=1)


# --- the floor and cold tiles in one process ------------------------------------------------------------------

def floor_tile(ds: LoadedDataset, seed: int, candidates: int = 48) -> tuple[tuple[int, int], np.ndarray, float]:
    """A typical covered top-level tile: of random tiles ≥ 90 % covers, the one of median JPEG size."""
    g, rng = ds.geometry, random.Random(seed)
    cols, rows = g.tile_counts(g.top)
    background = np.array(ds.background, np.uint8)
    found = []
    for _ in range(candidates * 50):
        x, y = rng.randrange(cols), rng.randrange(rows)
        pixels = ds.render_tile(g.top, x, y)
        covered = float(np.any(pixels != background, axis=2).mean())
        if covered >= 0.9:
            found.append((len(encode_tile(pixels, "jpg", 85)), (x, y), pixels, covered))
        if len(found) == candidates:
            break
    if not found:
        raise RuntimeError("no top-level tile is 90 % covered; is the wall empty?")
    _, where, pixels, covered = sorted(found, key=lambda f: f[0])[len(found) // 2]
    return where, pixels, covered


def measure_floor_and_cold_tiles(ds: LoadedDataset, encodes: int, samples: int, seed: int) -> dict:
    """The floor and the cold tiles. The floor's bar figure (``floor.ms``) is one encode of the floor tile timed
    after each sampled tile, so that it meets the same moment of a shared machine as the samples (a VM's
    neighbours come and go: a floor timed only before them was seen to differ by 35 % between runs); the
    ``encodes`` timed back to back first are kept beside it (``floor.tight_ms``)."""
    (x, y), pixels, covered = floor_tile(ds, seed)
    pixels = np.ascontiguousarray(pixels)
    stats.time_calls(lambda: encode_tile(pixels, "jpg", 85), 20)  # warm the encoder's code and buffers
    tight = stats.summarize(stats.time_calls(lambda: encode_tile(pixels, "jpg", 85), encodes))
    levels, interleaved = measure_cold_tiles(ds, samples, seed, pixels)
    floor = {"tile": f"{ds.geometry.top}/{x}/{y}", "covered": covered,
             "jpeg_bytes": len(encode_tile(pixels, "jpg", 85)), "ms": interleaved, "tight_ms": tight}
    return {"floor": floor, "levels": levels}


def cold_tile_plan(g: Geometry, samples: int, seed: int) -> list[tuple[int, int, int]]:
    """``samples`` distinct random tiles per level, all levels shuffled together; a level with fewer
    tiles than ``samples`` contributes every tile, cycled (the core has no tile cache to hit)."""
    rng = random.Random(seed)
    plan = []
    for z in range(g.top + 1):
        cols, rows = g.tile_counts(z)
        picks = rng.sample(range(cols * rows), min(samples, cols * rows))
        plan += [(z, i % cols, i // cols) for i in (picks * -(-samples // len(picks)))[:samples]]
    rng.shuffle(plan)
    return plan


def measure_cold_tiles(ds: LoadedDataset, samples: int, seed: int, floor_pixels: np.ndarray) -> tuple[dict, dict]:
    """Each tile of the plan timed twice, as a request for it answers it (``tile_bytes``: a stored JPEG as
    stored, anything else rendered and encoded q85: ``ms``, the bar) and rendered then encoded q85 whatever its
    level (``render_ms``: what a PNG tile or an IIIF region pays for the pixels; the cold-cache step's anchor);
    then one JPEG q85 encode of ``floor_pixels``. Returns (per level, the floor encodes' summary)."""
    g = ds.geometry
    for z in (g.top, g.top - 1):  # numba compiles (or loads its cache) on the first composed tile
        cols, rows = g.tile_counts(z)
        encode_tile(ds.render_tile(z, cols // 2, rows // 2), "jpg", 85)
    plan = cold_tile_plan(g, samples, seed)
    calls = {"ms": lambda z, x, y: ds.tile_bytes(z, x, y, "jpg", 85),
             "render_ms": lambda z, x, y: encode_tile(ds.render_tile(z, x, y), "jpg", 85)}
    wall_ms: dict[str, dict[int, list[float]]] = {kind: {z: [] for z in range(g.top + 1)} for kind in calls}
    cpu_ms: dict[int, list[float]] = {z: [] for z in range(g.top + 1)}  # wall >> cpu: the machine was busy
    floor_ms: list[float] = []
    with progress_bar(auto_refresh=False) as bar:  # no refresh thread: it would steal the GIL mid-timing
        task = bar.add_task("cold tiles", total=len(plan))
        for n, (z, x, y) in enumerate(plan):
            for kind, call in calls.items():
                started, cpu_started = time.perf_counter_ns(), time.process_time_ns()
                call(z, x, y)
                if kind == "ms":
                    cpu_ms[z].append((time.process_time_ns() - cpu_started) / 1e6)
                wall_ms[kind][z].append((time.perf_counter_ns() - started) / 1e6)
            started = time.perf_counter_ns()
            encode_tile(floor_pixels, "jpg", 85)
            floor_ms.append((time.perf_counter_ns() - started) / 1e6)
            if n % 100 == 99:
                bar.update(task, completed=n + 1, refresh=True)
    levels = {}
    for z in range(g.top + 1):
        tiles = g.tile_counts(z)[0] * g.tile_counts(z)[1]
        levels[str(z)] = {"tiles": tiles, "distinct": min(samples, tiles), "stored": ds.stored.is_stored(z),
                          **{kind: stats.summarize(spent[z]) for kind, spent in wall_ms.items()},
                          "cpu_ms": stats.summarize(cpu_ms[z])}
    return levels, stats.summarize(floor_ms)


def measure_cache_cold(ds: LoadedDataset, folder: DatasetDir, samples: int, seed: int) -> dict:
    """The cold-tile step with the page cache cold too: before each sample every data file of the dataset is
    evicted (``POSIX_FADV_DONTNEED``); each tile is timed twice, as the cold-tile step times it (render + JPEG
    q85) and as a request answers it (``tile_bytes``: a stored JPEG as stored), each after its own eviction,
    then once more with the page cache warm (the warm figure of the same tiles). The share of the data files
    still resident right after an eviction is measured (``mincore``) on a sample: pages the process maps (the
    chains layout's packs) stay."""
    g, files = ds.geometry, pagecache.data_files(folder)
    os.sync()  # an eviction drops clean pages only
    plan = cold_tile_plan(g, samples, seed + 11)  # other tiles than the cold-tile step's
    kinds = ("render", "served", "served warm")
    spent: dict[str, dict[int, list[float]]] = {k: {z: [] for z in range(g.top + 1)} for k in kinds}
    resident, before = [], pagecache.resident_fraction(files)
    calls = {"render": lambda z, x, y: encode_tile(ds.render_tile(z, x, y), "jpg", 85),
             "served": lambda z, x, y: ds.tile_bytes(z, x, y, "jpg", 85)}
    with progress_bar(auto_refresh=False) as bar:
        task = bar.add_task("cold-cache tiles", total=len(plan))
        for n, (z, x, y) in enumerate(plan):
            for kind, call in calls.items():
                pagecache.evict(files)
                if n % 25 == 0 and kind == "render":
                    resident.append(pagecache.resident_fraction(files))
                started = time.perf_counter_ns()
                call(z, x, y)
                spent[kind][z].append((time.perf_counter_ns() - started) / 1e6)
            started = time.perf_counter_ns()
            calls["served"](z, x, y)
            spent["served warm"][z].append((time.perf_counter_ns() - started) / 1e6)
            if n % 100 == 99:
                bar.update(task, completed=n + 1, refresh=True)
    levels = {str(z): {k: stats.summarize(spent[k][z]) for k in kinds} for z in range(g.top + 1)}
    return {"files": len(files), "bytes": sum(f.stat().st_size for f in files), "resident_before": before,
            "resident_after_evict": stats.summarize(resident), "layout": "chains" if ds.packs.start else "pyramid",
            "levels": levels}


# --- HTTP -----------------------------------------------------------------------------------------------------

def measure_http(settings: RenderBenchSettings, root: Path, children: Children, name: str) -> dict:
    """Two bounded loads on a fresh server: distinct tiles (every request renders), then levels uniform."""
    g, seed, out = walls.wall_geometry(root), settings.seed, settings.work / "load"
    mixes = {"distinct tiles": walls.distinct_tile_paths(g, 300_000, seed),
             "levels uniform": walls.random_tile_paths(g, 300_000, seed)}
    server, base = start_tiler_serve(children, root, f"serve-{name}.log")
    try:
        warm = run_load(children, base, walls.random_tile_paths(g, 50_000, seed + 1), out, f"warmup-{name}",
                        settings.connections, settings.http_warmup_seconds)
        runs = {}
        for mix, paths in mixes.items():
            before = cache_lookups(base)
            runs[mix] = run_load(children, base, paths, out, f"http-{name}-{mix.split()[0]}", settings.connections,
                                 settings.http_seconds)
            hits, misses = (cache_lookups(base).get(k, 0) - before.get(k, 0) for k in ("hit", "miss"))
            runs[mix]["cache_hit_ratio"] = hits / max(hits + misses, 1)
    finally:
        children.stop(server)
    return {"warmup_requests": warm["requests"], "warmup_non200": warm["non200"], "runs": runs,
            "non200": sum(r["non200"] for r in runs.values())}


# --- pyramid export -------------------------------------------------------------------------------------------

def time_dzsave(children: Children, flat: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if shutil.which("vips"):
        args = ["vips", "dzsave", flat, out / "wall", "--suffix", ".jpg[Q=85]", "--tile-size", 256, "--overlap", 0]
        seconds = children.run(args, "dzsave.log", 1800)
        tool = f"vips dzsave ({tool_version(['vips', '--version'])}, Debian libvips-tools)"
    else:
        started = time.perf_counter()
        pyvips.Image.new_from_file(str(flat)).dzsave(str(out / "wall"), suffix=".jpg[Q=85]", tile_size=256, overlap=0)
        seconds, tool = time.perf_counter() - started, f"pyvips Image.dzsave (libvips {pyvips.__version__})"
    tiles = sum(1 for _ in (out / "wall_files").rglob("*.jpg"))
    return {"tool": tool, "tiles": tiles, "seconds": seconds, "tiles_per_s": tiles / seconds}


def time_tiler_render(children: Children, root: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    log = children.log_dir / "tiler-render.log"
    log.unlink(missing_ok=True)
    args = [TILER, "render", "--root", root, "--dataset", DATASET, "--out", out, "--workers", 2]
    seconds = children.run(args, log.name, 1800)
    own = re.search(r"\(([0-9.]+) tiles/s\)", log.read_text())
    tiles = sum(1 for _ in (out / f"{DATASET}_files").rglob("*.jpg"))
    return {"tool": "tiler render --workers 2", "tiles": tiles, "seconds": seconds, "tiles_per_s": tiles / seconds,
            "self_reported_tiles_per_s": float(own.group(1)) if own else None}


def measure_export(settings: RenderBenchSettings, root: Path, children: Children) -> dict:
    ds = LoadedDataset.open(DatasetDir(root, DATASET))
    flat = walls.flatten_wall(ds, root.parent)
    rounds = []
    for n in range(settings.export_rounds):
        with console.status(f"export round {n + 1}/{settings.export_rounds}: vips dzsave"):
            dz = time_dzsave(children, flat, settings.work / "export" / "dzsave")
        with console.status(f"export round {n + 1}/{settings.export_rounds}: tiler render"):
            ours = time_tiler_render(children, root, settings.work / "export" / "tiler")
        rounds.append({"dzsave": dz, "tiler": ours})
    best_dz = max((r["dzsave"] for r in rounds), key=lambda r: r["tiles_per_s"])
    best_ours = max((r["tiler"] for r in rounds), key=lambda r: r["tiles_per_s"])
    return {"wall": walls.describe_wall(ds), "flat_image": str(flat), "rounds": rounds, "dzsave": best_dz,
            "tiler": best_ours, "ratio": best_ours["tiles_per_s"] / best_dz["tiles_per_s"]}


# --- memory ---------------------------------------------------------------------------------------------------

def measure_memory(settings: RenderBenchSettings, root: Path, children: Children) -> dict:
    """Server memory when ready and after each checkpoint of distinct random tiles, within memory_seconds."""
    g, last = walls.wall_geometry(root), settings.memory_checkpoints[-1]
    paths = walls.distinct_tile_paths(g, last, settings.seed + 2)
    server, base = start_tiler_serve(children, root, "serve-memory.log")
    try:
        points = [{"requests": 0, **memory_of(server.pid)}]
        served, non200, deadline = 0, 0, time.monotonic() + settings.memory_seconds
        for target in settings.memory_checkpoints:
            with console.status(f"memory: requests {served:,} -> {target:,} (bound {settings.memory_seconds:.0f} s)"):
                load = run_load(children, base, paths[served:target], settings.work / "load", f"memory-{target}",
                                settings.connections, max(1.0, deadline - time.monotonic()), target - served)
            served, non200 = served + load["requests"], non200 + load["non200"]
            points.append({"requests": served, "per_s": load["requests_per_s"], **memory_of(server.pid)})
    finally:
        children.stop(server)
    return {"server": f"tiler serve --workers 2, {g.width} x {g.height} wall", "non200": non200, "points": points}


# --- bars and the printed report -----------------------------------------------------------------------------

def collect_bars(doc: dict) -> list[dict]:
    """Issue 3's bars (plus the bench's own checks: zero non-200 responses, every request served) from
    whatever steps ran; ``key`` names each one's row in bench/BARS.md, ``group`` the wall of a level's bar."""
    bars = []
    for name, wall in doc["walls"].items():
        floor = wall.get("floor", {}).get("ms", {}).get("p50")
        for z, level in wall.get("levels", {}).items():
            bars.append(bar(f"{name} z={z} cold p50", level["ms"]["p50"], "ms", 5, anchor="floor",
                            anchor_figure=floor, key="render.cold-p50", group=name))
            bars.append(bar(f"{name} z={z} cold p99", level["ms"]["p99"], "ms", 25, key="render.cold-p99",
                            group=name))
        cache = wall.get("cache", {})
        for z, level in cache.get("levels", {}).items():
            warm = wall["levels"][z]["render_ms"]["p50"]
            note = (f"{cache['layout']} layout; resident right after eviction: mean "
                    f"{cache['resident_after_evict'].get('mean', 0):.0%} of {cache['bytes'] / 1e6:,.0f} MB")
            bars.append(bar(f"{name} z={z} cold-cache p50", level["render"]["p50"], "ms", 3, anchor="warm p50",
                            anchor_figure=warm, key="render.cache-cold-p50", group=name, note=note))
            bars.append(bar(f"{name} z={z} cold-cache p99", level["render"]["p99"], "ms", 25,
                            key="render.cache-cold-p99", group=name, note=note))
            bars.append(bar(f"{name} z={z} cold-cache p50 as served", level["served"]["p50"], "ms", None,
                            anchor="warm", anchor_figure=level["served warm"]["p50"], key="render.cache-cold-served",
                            group=name, note="a stored JPEG answered as stored; the figure a request pays"))
        if "http" in wall:
            bars.append(bar(f"{name} HTTP non-200", wall["http"]["non200"], "responses", 0,
                            key="render.http-non200", kind="check"))
            for mix, r in wall["http"]["runs"].items():
                bars.append(bar(f"{name} HTTP {mix}, 2 workers", r["requests_per_s"], "requests/s", None,
                                at_least=True, key="render.http-throughput", group=name))
    if "export" in doc:
        e = doc["export"]
        bars.append(bar("tiler render tiles/s", e["tiler"]["tiles_per_s"], "tiles/s", 1.0, at_least=True,
                        anchor="dzsave", anchor_figure=e["dzsave"]["tiles_per_s"], key="render.export"))
    if "memory" in doc:
        last, target = doc["memory"]["points"][-1], doc["settings"]["memory_checkpoints"][-1]
        note = None if target >= 100_000 else f"after {target:,} requests (quick), not 100,000"
        bars.append(bar("serve non-200", doc["memory"]["non200"], "responses", 0, key="render.memory-non200",
                        kind="check"))
        bars.append(bar("serve requests served", last["requests"], "requests", target, at_least=True,
                        key="render.memory-requests", kind="check"))
        bars.append(bar("serve PSS sum", last["pss_mb"], "MB", 1500, key="render.memory",  # RSS sums count
                        note=note))                                                    # shared pages twice
    return bars


def latency_report(name: str, wall: dict, settings: dict) -> list[str]:
    w, f, fm = wall["wall"], wall["floor"], wall["floor"]["ms"]
    rows = [(z + ("*" if lv["distinct"] < lv["ms"]["n"] else ""), lv["tiles"], "stored" if lv["stored"] else "drawn",
             lv["ms"]["n"], f"{lv['ms']['p50']:.3f}", f"{lv['ms']['p99']:.3f}", f"{lv['ms']['p50'] / fm['p50']:.2f}×",
             "pass" if lv["ms"]["p50"] <= 5 * fm["p50"] else "FAIL", "pass" if lv["ms"]["p99"] <= 25 else "FAIL",
             f"{lv['cpu_ms']['p50']:.3f}", f"{lv['render_ms']['p50']:.3f}",
             f"{lv['render_ms']['p50'] / fm['p50']:.2f}×")
            for z, lv in wall["levels"].items()]
    return [f"\n== {name} wall: {w['width']} x {w['height']} px, {w['items']} items, levels 0-{w['top_level']} "
            f"(0-{w['overview_level']} pre-rendered overviews); load average {wall['load_average']} ==",
            f"floor: JPEG q85 (libjpeg-turbo, as tiles are encoded) of top-level tile {f['tile']} ({f['covered']:.0%} "
            f"covers, {f['jpeg_bytes'] / 1e3:.1f} kB), one encode after each sampled tile: median {fm['p50']:.3f} ms "
            f"(min {fm['min']:.3f}, p90 {fm['p90']:.3f}; {fm['n']} encodes)"
            + (f"; back to back before them: median {f['tight_ms']['p50']:.3f} ms ({f['tight_ms']['n']} encodes)"
               if "tight_ms" in f else ""),
            f"cold tiles: one process, {settings['samples_per_level']} random tiles per level (seed "
            f"{settings['seed']}), levels interleaved, numba warmed first; no tile twice (* = the level has fewer "
            "tiles: all of them, cycled); OS page cache warm (every data file read first: "
            f"{wall.get('resident_before_cold_tiles', float('nan')):.0%} resident). p50/p99 = as a request "
            "answers the tile (tile_bytes: a stored JPEG as stored, a drawn one rendered + JPEG q85); cpu = its "
            "process CPU time (wall >> cpu: preempted, or a read from disk); render = the same tile's pixels "
            "rendered (a stored tile decoded) + JPEG q85, what a PNG tile or an IIIF region pays",
            format_table(("level", "tiles", "tiles are", "samples", "p50 ms", "p99 ms", "p50/floor", "bar(≤5×)",
                          "p99 bar(≤25ms)", "cpu p50", "render p50", "render/floor"), rows)]


def http_report(name: str, h: dict) -> list[str]:
    first = next(iter(h["runs"].values()))
    rows = [(mix, f"{r['requests_per_s']:.0f}", r["requests"], f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
             f"{r['p99_ms']:.2f}", r["non200"], r["socket_errors"] + r["timeouts"], f"{r['cache_hit_ratio']:.0%}")
            for mix, r in h["runs"].items()]
    return [f"\nHTTP, {name} wall: tiler serve --workers 2 under {first['tool'].split(' [')[0]}, "
            f"{first['connections']} connections, {first['seconds']:.0f} s per row, after a {h['warmup_requests']}-"
            f"request warm-up; load average {h['load_average']}. distinct = no tile twice, every tile of the pyramid "
            "equally likely; levels uniform = a level, then a tile of it",
            format_table(("paths", "requests/s", "requests", "p50 ms", "p90 ms", "p99 ms", "non-200", "errors",
                          "cache hits"), rows)]


def cache_report(name: str, wall: dict) -> list[str]:
    c = wall["cache"]
    rows = []
    for z, lv in c["levels"].items():
        warm = wall["levels"][z]["render_ms"]["p50"]
        r, served, served_warm = lv["render"], lv["served"], lv["served warm"]
        rows.append((z, r["n"], f"{warm:.3f}", f"{r['p50']:.3f}", f"{r['p99']:.3f}", f"{r['p50'] / warm:.2f}×",
                     "pass" if r["p50"] <= 3 * warm else "FAIL", "pass" if r["p99"] <= 25 else "FAIL",
                     f"{served_warm['p50']:.3f}", f"{served['p50']:.3f}", f"{served['p99']:.3f}"))
    after = c["resident_after_evict"]
    return [f"\ncold-cache tiles, {name} wall ({c['layout']} layout): every data file ({c['files']} files, "
            f"{c['bytes'] / 1e6:,.0f} MB; {c['resident_before']:.0%} resident before) evicted with "
            f"POSIX_FADV_DONTNEED before each timed call; right after an eviction {after.get('mean', 0):.0%} "
            f"(max {after.get('max', 0):.0%}) was still resident (mincore; a page the process maps stays); "
            f"warm = the cold-tile step's p50 of the level; served = tile_bytes, what a request pays",
            format_table(("level", "samples", "warm p50", "cold-cache p50", "p99 ms", "p50/warm", "bar(≤3×)",
                          "p99 bar(≤25ms)", "served warm p50", "served cold p50", "served cold p99"), rows)]


def export_report(e: dict) -> list[str]:
    w, dz, ours = e["wall"], e["dzsave"], e["tiler"]
    rows = [(dz["tool"], dz["tiles"], f"{dz['seconds']:.2f}", f"{dz['tiles_per_s']:.0f}", "1.00× (anchor)", ""),
            (ours["tool"], ours["tiles"], f"{ours['seconds']:.2f}", f"{ours['tiles_per_s']:.0f}", f"{e['ratio']:.2f}×",
             "pass" if e["ratio"] >= 1.0 else "FAIL")]
    own = ours.get("self_reported_tiles_per_s") or 0
    return [f"\n== pyramid export of the {w['width']} x {w['height']} wall: DeepZoom, 256 px, overlap 0, JPEG q85; "
            f"wall-clock seconds of each command, best of {len(e['rounds'])} alternating rounds; load average "
            f"{e['load_average']} ==",
            format_table(("tool", "tiles", "seconds", "tiles/s", "ratio", "bar(≥1.0×)"), rows),
            f"(tiler render's own figure, without its start-up: {own:.0f} tiles/s; dzsave reads {e['flat_image']})"]


def memory_report(m: dict) -> list[str]:
    rows = [(f"{p['requests']:,}", f"{p['rss_mb']:.0f}", f"{p['pss_mb']:.0f}", f"{p['pss_anon_mb']:.0f}",
             f"{p['pss_file_mb']:.0f}", len(p["processes"]), "pass" if p["pss_mb"] <= 1500 else "FAIL")
            for p in m["points"]]
    return [f"\n== memory: {m['server']}, distinct random tiles (every tile equally likely); sums over the "
            f"server's processes (parent, workers, resource tracker); non-200 {m['non200']}; load average "
            f"{m['load_average']} ==",
            format_table(("requests", "RSS MB", "PSS MB", "PSS anon", "PSS file", "procs", "bar(PSS ≤ 1500 MB)"),
                         rows)]


def print_report(doc: dict) -> None:
    """The tables of ``doc`` (as ``run`` returns it) on stdout."""
    m, lines = doc["machine"], []
    for name, wall in doc["walls"].items():
        lines += latency_report(name, wall, doc["settings"]) if "levels" in wall else []
        lines += cache_report(name, wall) if "cache" in wall and "levels" in wall else []
        lines += http_report(name, wall["http"]) if "http" in wall else []
    lines += export_report(doc["export"]) if "export" in doc else []
    lines += memory_report(doc["memory"]) if "memory" in doc else []
    shown = [b for b in doc["bars"] if b["pass"] is False or " z=" not in b["name"]]  # levels are in their tables
    judged = [b for b in doc["bars"] if b["pass"] is not None]
    lines += [f"\n== bars: {sum(b['pass'] for b in judged)} of {len(judged)} pass"
              + ("" if doc["complete"] else " (INCOMPLETE RUN)") + "; all failures and the bars not shown above ==",
              format_bars(shown),
              f"\n{m['cpu']}, {m['cores']} cores, {m['memory_mb']} MB, Python {m['python']}; load average at start "
              f"{m['load_average']}, at end {doc['load_average_end']}; {doc['seconds']:.0f} s"]
    print("\n".join(lines + ([f"results: {doc['results_file']}"] if "results_file" in doc else [])))


# --- the run --------------------------------------------------------------------------------------------------

def step(what: str, measure: Callable[[], dict]) -> dict:
    """Run one measurement, noting the load average it started under (the machine is shared)."""
    console.log(what)
    load = load_average()
    return {**measure(), "load_average": load}


def run(settings: RenderBenchSettings) -> dict:
    """Run the selected steps; return the results document (also written under ``results_dir``)."""
    started, steps, s = time.time(), settings.steps, settings
    doc: dict = {"bench": "render", "issue": 3, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "machine": machine(), "settings": asdict(settings), "walls": {}, "complete": False}
    for scratch in ("logs", "load"):  # this run's logs and load files only
        shutil.rmtree(settings.work / scratch, ignore_errors=True)
    with Children(settings.work / "logs") as children:
        try:
            needed = {*s.walls, *([s.export_wall] if "export" in steps else []),
                      *([s.memory_wall] if "memory" in steps else [])}
            roots = {w: w.prepare(s.work, children, s.seed, s.rebuild)
                     for w in sorted(needed, key=lambda w: (-w.gigapixels, w.all_distinct))}
            for w in s.walls:
                folder = DatasetDir(roots[w], DATASET)
                ds = LoadedDataset.open(folder)
                wall = doc["walls"][w.name] = {"wall": walls.describe_wall(ds)}
                if "latency" in steps:
                    files = pagecache.data_files(folder)
                    pagecache.warm(files)  # caches cold, page cache warm: whatever an earlier step or run evicted
                    wall["resident_before_cold_tiles"] = pagecache.resident_fraction(files)
                    wall.update(step(f"{w.name} wall: encode floor and cold tiles", lambda ds=ds:
                                     measure_floor_and_cold_tiles(ds, s.floor_encodes, s.samples_per_level, s.seed)))
                if "cache" in steps and "latency" in steps and w in s.cache_walls:
                    wall["cache"] = step(f"{w.name} wall: cold-cache tiles", lambda ds=ds, folder=folder:
                                         measure_cache_cold(ds, folder, s.cache_samples_per_level, s.seed))
                del ds
                if "http" in steps and w in s.http_walls:
                    wall["http"] = step(f"{w.name} wall: HTTP throughput",
                                        lambda w=w: measure_http(s, roots[w], children, str(w)))
            if "export" in steps:
                doc["export"] = step(f"pyramid export of the {s.export_wall.name} wall",
                                     lambda: measure_export(s, roots[s.export_wall], children))
            if "memory" in steps:
                doc["memory"] = step(f"memory of tiler serve on the {s.memory_wall.name} wall",
                                     lambda: measure_memory(s, roots[s.memory_wall], children))
            doc["complete"] = True
        finally:
            doc.update(seconds=time.time() - started, load_average_end=load_average(), bars=collect_bars(doc))
            if settings.results_dir is not None:
                doc["results_file"] = str(write_results("render", doc, settings.results_dir))
    return doc


def parse_args(argv: list[str] | None) -> RenderBenchSettings:
    parser = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, 20,000 memory requests")
    parser.add_argument("--work", type=Path, default=RenderBenchSettings.work, help="walls, logs, exports")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {','.join(STEPS)}")
    parser.add_argument("--walls", default=",".join(map(str, RenderBenchSettings.walls)),
                        help="walls for floor and cold tiles (gigapixels, d: every item distinct), e.g. 46,1,2d")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rebuild", action="store_true", help="regenerate and republish the walls")
    parser.add_argument("--no-results", action="store_true", help="do not write bench/results/*.json")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results JSON goes")
    args = parser.parse_args(argv)
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    if unknown := set(steps) - set(STEPS):
        parser.error(f"unknown steps {sorted(unknown)}; choose from {','.join(STEPS)}")
    settings = RenderBenchSettings(work=args.work.resolve(), walls=tuple(W(w) for w in args.walls.split(",")),
                                   seed=args.seed, steps=steps, rebuild=args.rebuild,
                                   results_dir=None if args.no_results else args.results_dir)
    return settings.quick() if args.quick else settings


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    stop_on_sigterm()
    try:
        doc = run(settings)
    except KeyboardInterrupt:
        console.print("interrupted: every child process was stopped")
        return 130
    print_report(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
