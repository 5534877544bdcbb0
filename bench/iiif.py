"""The IIIF bars of issues 16 and 17, each beside its anchor, measured in one run on the 46-Gpx wall.

1. A 1024x1024 region at every level, beside one uncached tile of the same level, as a client sees them: the
   request's time on a fresh ``tiler serve --workers 1``, distinct requests, interleaved; the ratio of their
   p50s, worst level deciding (issue 16: <= 10x). The same pair is also timed in one process (parse, plan,
   render, JPEG q85 against render, JPEG q85): at the pre-rendered levels a tile is a copy and an encode, and
   a region has 16 times its pixels to encode, so there the core ratio is about 16-20 (shown, no bar).
2. ``tiler serve --workers 2`` under a saturating IIIF load (concurrent distinct 2048-px regions): the p99 of
   distinct uncached tile requests made meanwhile, beside the same probe with no IIIF load (issue 17: <= 100 ms).
3. A fresh ``tiler serve --workers 2``: anonymous memory (``Anonymous`` of smaps_rollup, summed over the
   server and its workers) after a burst of 100 distinct 2048-px IIIF requests, beside before it (issue 17:
   within 10 %). All traffic on 127.0.0.1, every loop bounded in count and time, every child stopped by PID.

    .venv/bin/python -m bench.iiif [--quick] [--work bench/work] [--steps region,saturated,memory]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx

from bench import stats, walls
from bench.bars import bar, format_bars
from bench.machine import load_average, machine
from bench.processes import Children, memory_of, run_and_report
from bench.progress import console
from bench.results import RESULTS_DIR, WORK_DIR, write_results
from bench.tables import format_table
from bench.tileserver import start_tiler_serve
from bench.walls import DATASET
from gigaformat.layout import DatasetDir
from gigaformat.levels import Geometry
from tiler.coarse_raster import build_dataset_raster, plan_levels, raster_path
from tiler.dataset import LoadedDataset
from tiler.encode import encode_tile
from tiler.iiif_parse import parse_iiif_path
from tiler.iiif_plan import finish, plan_request, render_plan
from tiler.settings import ServeSettings

STEPS = ("region", "saturated", "memory")
REGION = 1024


@dataclass(frozen=True)
class IiifBenchSettings:
    work: Path = WORK_DIR
    gigapixels: float = 46.0
    seed: int = 1
    region_samples: int = 12          # 1024-px regions per level (and as many tiles, for the anchor)
    distinct_wall: str = "2d"         # the region requests again on this wall of all-distinct covers ("": not)
    iiif_connections: int = 24        # concurrent IIIF requests of the saturating load
    probe_seconds: float = 20.0       # tile probe with and without the IIIF load, each
    burst: int = 100                  # large IIIF requests of the memory burst
    burst_seconds: float = 180.0      # bound on the burst (503s are retried after Retry-After)
    settle_seconds: float = 3.0       # after the burst, before memory is read again
    results_dir: Path | None = RESULTS_DIR
    steps: tuple[str, ...] = STEPS

    def quick(self) -> IiifBenchSettings:
        return replace(self, region_samples=5, probe_seconds=8.0)


# --- 1. a 1024x1024 region beside one uncached tile, level by level ----------------------------------------------

def region_plan(g: Geometry, z: int, rng: random.Random) -> str:
    """The IIIF path of a random 1024x1024 output at level ``z`` on that level's grid (the whole level when it
    is smaller)."""
    f = g.factor(z)
    w, h = g.level_size(z)
    ow, oh = min(REGION, w), min(REGION, h)
    lx, ly = rng.randrange(w - ow + 1), rng.randrange(h - oh + 1)
    x, y = lx * f, ly * f
    cw, ch = min(ow * f, g.width - x), min(oh * f, g.height - y)
    return f"{DATASET}/{x},{y},{cw},{ch}/{ow},{oh}/0/default.jpg"


def measure_regions_http(settings: IiifBenchSettings, root: Path, children: Children) -> dict:
    g = walls.wall_geometry(root)
    rng = random.Random(settings.seed + 1)
    # the IIIF cache off: a level smaller than 1024 px has one region only, which would be a cache hit after once
    server, base = start_tiler_serve(children, root, "iiif-region.log", workers=1, extra=("--iiif-cache-mb", "0"))
    levels = {}
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            client.get(f"/iiif/3/{region_plan(g, g.top, rng)}").raise_for_status()  # compiled kernels loaded
            client.get(f"/tiles/{DATASET}/{g.top}/0/0.jpg").raise_for_status()
            for z in range(g.top + 1):
                cols, rows = g.tile_counts(z)
                picks = rng.sample(range(cols * rows), min(settings.region_samples, cols * rows))
                tiles = [f"/tiles/{DATASET}/{z}/{i % cols}/{i // cols}.jpg" for i in picks]
                spent: dict[str, list[float]] = {"tile": [], "region": []}
                for n in range(settings.region_samples):
                    region = f"/iiif/3/{region_plan(g, z, rng)}"
                    for kind, path in (("tile", tiles[n % len(tiles)]), ("region", region)):
                        started = time.perf_counter()
                        client.get(path).raise_for_status()
                        spent[kind].append((time.perf_counter() - started) * 1e3)
                w, h = g.level_size(z)
                level = {"region": f"{min(REGION, w)}x{min(REGION, h)}", "tile_ms": stats.summarize(spent["tile"]),
                         "region_ms": stats.summarize(spent["region"])}
                level["ratio"] = level["region_ms"]["p50"] / level["tile_ms"]["p50"]
                levels[str(z)] = level
                console.log(f"HTTP level {z}: region {level['region']} p50 {level['region_ms']['p50']:.1f} ms, "
                            f"tile p50 {level['tile_ms']['p50']:.2f} ms, ratio {level['ratio']:.1f}")
    finally:
        children.stop(server)
    return levels


def build_coarse_raster(ds: LoadedDataset, folder: DatasetDir) -> dict:
    """Build the dataset's coarse raster afresh, as a serving worker does, timed; attached to ``ds``."""
    levels = plan_levels(ds.geometry, ds.overview_level, ServeSettings.coarse_raster_mb << 20)
    path = raster_path(folder, ds.generation)
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ds.coarse = build_dataset_raster(ds, path, levels)
    seconds = time.perf_counter() - started
    found = {"levels": [level.z for level in levels], "mb": path.stat().st_size / 1e6, "seconds": seconds,
             "dataset_mb": walls.dataset_bytes(folder) / 1e6}
    console.log(f"coarse raster of levels {found['levels']}: {found['mb']:.0f} MB beside the dataset's "
                f"{found['dataset_mb']:.0f} MB, built in {seconds:.2f} s")
    return found


def measure_regions(ds: LoadedDataset, samples: int, seed: int) -> dict:
    g = ds.geometry
    rng = random.Random(seed)

    def region(path: str) -> None:
        req = parse_iiif_path(path)
        plan = plan_request(g, req)
        encode_tile(finish(render_plan(plan, g, ds.render_level_window), req.mirror, req.rotation, req.quality),
                    "jpg", 85)

    def tile(z: int, x: int, y: int) -> None:
        encode_tile(ds.render_tile(z, x, y), "jpg", 85)

    region(region_plan(g, g.top, rng))  # numba compiles (or loads its cache) first
    tile(g.top, 0, 0)
    levels = {}
    for z in range(g.top + 1):
        cols, rows = g.tile_counts(z)
        tiles = [(z, i % cols, i // cols) for i in rng.sample(range(cols * rows), min(samples, cols * rows))]
        regions = [region_plan(g, z, rng) for _ in range(samples)]
        spent_tiles, spent_regions = [], []
        for n in range(samples):  # interleaved, so that a busy moment of the machine hits both
            started = time.perf_counter()
            tile(*tiles[n % len(tiles)])
            spent_tiles.append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            region(regions[n])
            spent_regions.append((time.perf_counter() - started) * 1e3)
        w, h = g.level_size(z)
        levels[str(z)] = {"region": f"{min(REGION, w)}x{min(REGION, h)}", "tile_ms": stats.summarize(spent_tiles),
                          "region_ms": stats.summarize(spent_regions)}
        levels[str(z)]["ratio"] = levels[str(z)]["region_ms"]["p50"] / levels[str(z)]["tile_ms"]["p50"]
        console.log(f"level {z}: region {levels[str(z)]['region']} p50 {levels[str(z)]['region_ms']['p50']:.1f} ms, "
                    f"tile p50 {levels[str(z)]['tile_ms']['p50']:.2f} ms, ratio {levels[str(z)]['ratio']:.1f}")
    return levels


# --- 2. tiles while IIIF is saturated ------------------------------------------------------------------------

def large_iiif_paths(g: Geometry, count: int, seed: int) -> list[str]:
    """``count`` distinct 2048-px answers over random regions: on a level's grid, and off it (``!w,h``)."""
    rng = random.Random(seed)
    paths = []
    for n in range(count):
        f = 1 << rng.randrange(0, 6)
        span = min(2048 * f, g.width, g.height)
        x, y = rng.randrange(g.width - span + 1), rng.randrange(g.height - span + 1)
        if n % 2:
            paths.append(f"/iiif/3/{DATASET}/{x // f * f},{y // f * f},{span},{span}/{span // f},/0/default.jpg")
        else:
            paths.append(f"/iiif/3/{DATASET}/{x},{y},{span + 7},{span - 5}/!2048,2048/0/default.jpg")
    return paths


async def _probe(base: str, paths: list[str], seconds: float) -> dict:
    """Sequential tile requests on one kept-alive connection for ``seconds`` (at most one pass over paths)."""
    spent, statuses = [], {}
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for path in paths:
            if time.monotonic() >= deadline:
                break
            started = time.perf_counter()
            response = await client.get(path)
            spent.append((time.perf_counter() - started) * 1e3)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    return {"ms": stats.summarize(spent), "statuses": statuses}


async def _iiif_load(base: str, paths: list[str], connections: int, stop: asyncio.Event) -> dict:
    statuses: dict[int, int] = {}
    queue = list(reversed(paths))

    async def worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set() and queue:
            response = await client.get(queue.pop())
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(connections)))
    return {"statuses": statuses}


async def _saturated(base: str, tiles: list[str], iiif: list[str], settings: IiifBenchSettings) -> dict:
    stop = asyncio.Event()
    load = asyncio.create_task(_iiif_load(base, iiif, settings.iiif_connections, stop))
    await asyncio.sleep(2.0)  # the IIIF pools full before the probe starts
    probe = await _probe(base, tiles, settings.probe_seconds)
    stop.set()
    return {"probe": probe, "iiif": await load}


def measure_saturated(settings: IiifBenchSettings, root: Path, children: Children) -> dict:
    g = walls.wall_geometry(root)
    server, base = start_tiler_serve(children, root, "iiif-saturated.log", workers=2)
    try:
        tiles = walls.distinct_tile_paths(g, 200_000, settings.seed + 11)
        quiet = asyncio.run(_probe(base, tiles[:100_000], settings.probe_seconds))
        console.log(f"tiles alone: p99 {quiet['ms']['p99']:.1f} ms over {quiet['ms']['n']}")
        busy = asyncio.run(_saturated(base, tiles[100_000:], large_iiif_paths(g, 5000, settings.seed + 12),
                                      settings))
        console.log(f"tiles under IIIF load: p99 {busy['probe']['ms']['p99']:.1f} ms over {busy['probe']['ms']['n']}; "
                    f"IIIF answers {busy['iiif']['statuses']}")
    finally:
        children.stop(server)
    return {"quiet": quiet, "saturated": busy}


# --- 3. anonymous memory after a burst ------------------------------------------------------------------------

async def _burst(base: str, paths: list[str], seconds: float) -> dict:
    """Every path at once; a 503 is retried after its Retry-After, until each got its 200 or time is up."""
    deadline = time.monotonic() + seconds
    retried = 0

    async def one(client: httpx.AsyncClient, path: str) -> int:
        nonlocal retried
        while True:
            response = await client.get(path)
            if response.status_code != 503 or time.monotonic() > deadline:
                return response.status_code
            retried += 1
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    limits = httpx.Limits(max_connections=len(paths), max_keepalive_connections=len(paths))
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        codes = await asyncio.gather(*(one(client, p) for p in paths))
    return {"statuses": {c: codes.count(c) for c in set(codes)}, "retried_503": retried}


def measure_memory(settings: IiifBenchSettings, root: Path, children: Children) -> dict:
    g = walls.wall_geometry(root)
    server, base = start_tiler_serve(children, root, "iiif-memory.log", workers=2)
    try:
        # every code path loaded and compiled once in every worker: the warm-up's requests go at once, each on a
        # connection of its own (one kept-alive connection would warm one worker, and the other would count
        # its first composed tile's one-time loading of the render core as growth in the burst)
        warm_up = (walls.distinct_tile_paths(g, 200, settings.seed + 21), large_iiif_paths(g, 8, settings.seed + 22))
        for paths in warm_up:
            asyncio.run(_burst(base, paths, settings.burst_seconds))
        time.sleep(settings.settle_seconds)
        before = memory_of(server.pid)
        burst = asyncio.run(_burst(base, large_iiif_paths(g, settings.burst, settings.seed + 23),
                                   settings.burst_seconds))
        time.sleep(settings.settle_seconds)
        after = memory_of(server.pid)
    finally:
        children.stop(server)
    result = {"before": before, "after": after, "burst": burst,
              "anonymous_before_mb": sum(p["anonymous_mb"] for p in before["processes"]),
              "anonymous_after_mb": sum(p["anonymous_mb"] for p in after["processes"])}
    console.log(f"anonymous memory {result['anonymous_before_mb']:.0f} MB before the burst, "
                f"{result['anonymous_after_mb']:.0f} MB after ({burst})")
    return result


# --- the run ---------------------------------------------------------------------------------------------------

def collect_bars(doc: dict) -> list[dict]:
    bars = []
    if "region" in doc:
        for z, level in doc["region_http"].items():
            bars.append(bar(f"1024-px region request, level {z} ({level['region']})", level["region_ms"]["p50"],
                            "ms", 10, anchor="one uncached tile request", anchor_figure=level["tile_ms"]["p50"],
                            key="iiif.region", group=f"{doc['settings']['gigapixels']} Gpx"))
        for z, level in doc.get("region_http_distinct", {}).items():
            bars.append(bar(f"1024-px region request, level {z} ({level['region']})", level["region_ms"]["p50"],
                            "ms", 10, anchor="one uncached tile request", anchor_figure=level["tile_ms"]["p50"],
                            key="iiif.region", group=doc["distinct_wall"]))
        for z, level in doc["region"].items():
            bars.append(bar(f"1024-px region in process, level {z}", level["region_ms"]["p50"], "ms", None,
                            anchor="one uncached tile in process", anchor_figure=level["tile_ms"]["p50"],
                            key="iiif.region-core", kind="info", group=f"{doc['settings']['gigapixels']} Gpx"))
    if "saturated" in doc:
        s = doc["saturated"]
        probe = s["saturated"]["probe"]
        bars.append(bar("tile p99 while IIIF is saturated", probe["ms"]["p99"], "ms", 100,
                        anchor="tile p99 without IIIF load", anchor_figure=s["quiet"]["ms"]["p99"],
                        judged_on="figure", key="iiif.tile-p99"))
        non200 = sum(n for code, n in probe["statuses"].items() if int(code) != 200)
        refused = sum(n for code, n in s["saturated"]["iiif"]["statuses"].items() if int(code) == 503)
        bars.append(bar("tile non-200 while IIIF is saturated", non200, "responses", 0, key="iiif.tile-non200",
                        kind="check", note=f"IIIF answers {s['saturated']['iiif']['statuses']} ({refused} 503s: "
                                           "the IIIF queue's bound)"))
    if "memory" in doc:
        m = doc["memory"]
        bars.append(bar("anonymous memory after 100 large IIIF requests", m["anonymous_after_mb"], "MB", 1.10,
                        anchor="before the burst", anchor_figure=m["anonymous_before_mb"], key="iiif.memory",
                        note=f"burst {m['burst']}; per process " + ", ".join(
                            f"{a['anonymous_mb']:.0f} -> {b['anonymous_mb']:.0f}"
                            for a, b in zip(m["before"]["processes"], m["after"]["processes"], strict=False)) + " MB"))
    return bars


def run(settings: IiifBenchSettings) -> dict:
    settings.work.mkdir(parents=True, exist_ok=True)
    doc: dict = {"bench": "iiif", "settings": {k: str(v) for k, v in asdict(settings).items()}, "machine": machine()}
    doc["settings"]["gigapixels"] = f"{settings.gigapixels:g}"
    with Children(settings.work / "iiif-logs") as children:
        root = walls.prepare_wall(settings.work, settings.gigapixels, children, settings.seed)
        if "region" in settings.steps:
            ds = LoadedDataset.open(DatasetDir(root, DATASET))
            doc["wall"] = walls.describe_wall(ds)
            doc["coarse_raster"] = build_coarse_raster(ds, DatasetDir(root, DATASET))
            doc["region"] = measure_regions(ds, settings.region_samples, settings.seed)
            del ds
            doc["region_http"] = measure_regions_http(settings, root, children)
            if settings.distinct_wall:
                spec = walls.WallSpec.parse(settings.distinct_wall)
                doc["distinct_wall"] = spec.name
                doc["region_http_distinct"] = measure_regions_http(settings, spec.prepare(settings.work, children,
                                                                                          settings.seed), children)
        if "saturated" in settings.steps:
            doc["saturated"] = measure_saturated(settings, root, children)
        if "memory" in settings.steps:
            doc["memory"] = measure_memory(settings, root, children)
    doc["bars"] = collect_bars(doc)
    doc["machine"]["load_average_after"] = load_average()
    if settings.results_dir is not None:
        doc["results_file"] = str(write_results("iiif", doc, settings.results_dir))
    return doc


def print_report(doc: dict) -> None:
    if "region" in doc:
        rows = [(z, level["region"], f"{level['region_ms']['p50']:.1f}", f"{level['tile_ms']['p50']:.2f}",
                 f"{level['ratio']:.1f}", f"{core['region_ms']['p50']:.1f}", f"{core['tile_ms']['p50']:.2f}",
                 f"{core['ratio']:.1f}") for (z, level), core in zip(doc["region_http"].items(), doc["region"].values(),
                                                                       strict=True)]
        print(format_table(("level", "region", "HTTP region p50 ms", "HTTP tile p50 ms", "ratio", "core region ms",
                            "core tile ms", "core ratio"), rows))
    if "saturated" in doc:
        s = doc["saturated"]
        print(f"\ntile probe alone: {s['quiet']['ms']}\nunder IIIF load: {s['saturated']['probe']['ms']}; "
              f"IIIF {s['saturated']['iiif']['statuses']}")
    if "memory" in doc:
        m = doc["memory"]
        print(f"\nanonymous memory: {m['anonymous_before_mb']:.0f} MB before, {m['anonymous_after_mb']:.0f} MB after; "
              f"PSS {m['before']['pss_mb']:.0f} -> {m['after']['pss_mb']:.0f} MB; burst {m['burst']}")
    print("\n" + format_bars(doc["bars"]))
    print(f"\nload average {doc['machine']['load_average']} before, {doc['machine']['load_average_after']} after")
    if "results_file" in doc:
        print(f"results: {doc['results_file']}")


def parse_args(argv: list[str] | None) -> IiifBenchSettings:
    parser = argparse.ArgumentParser(prog="python -m bench.iiif", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter probes")
    parser.add_argument("--work", type=Path, default=IiifBenchSettings.work)
    parser.add_argument("--gigapixels", type=float, default=IiifBenchSettings.gigapixels)
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {','.join(STEPS)}")
    parser.add_argument("--distinct-wall", default=IiifBenchSettings.distinct_wall,
                        help="the all-distinct wall the region requests are also made on, e.g. 2d ('': none)")
    parser.add_argument("--no-results", action="store_true", help="do not write bench/results/*.json")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results JSON goes")
    args = parser.parse_args(argv)
    steps = tuple(s for s in args.steps.split(",") if s)
    if unknown := set(steps) - set(STEPS):
        parser.error(f"unknown steps {sorted(unknown)}; choose from {','.join(STEPS)}")
    settings = IiifBenchSettings(work=args.work, gigapixels=args.gigapixels, steps=steps,
                                 distinct_wall=args.distinct_wall,
                                 results_dir=None if args.no_results else args.results_dir)
    return settings.quick() if args.quick else settings


def main(argv: list[str] | None = None) -> int:
    return run_and_report(run, print_report, parse_args(argv), fail_on_bars=True)


if __name__ == "__main__":
    sys.exit(main())
