"""Cold start of a render node (issue 5's bar): from ``scripts/ec2_render.sh --local`` to the first tile
served by the registered node, for the default 46-Gpx wall in a local S3 (SeaweedFS), broken down by phase.

Before the clock starts: SeaweedFS, the bench's wall (cached under ``bench/work/``), ``tiler publish`` and
``node-bootstrap release``. Then, timed: the launcher starts an IMDSv2 emulator and ``node-bootstrap run``
on 127.0.0.N; the bench polls ``s3://BUCKET/proxy/`` for the node's record and asks the registered address
for a tile. Phases come from the node's own timestamps: ``run/status.json`` (bootstrap, update, children),
``synch.down`` (sync), the render server's log (load, register).

    .venv/bin/python -m bench.coldstart [--quick] [--gigapixels 46] [--runs 3] [--distinct-runs 1]
        [--no-kernels] [--no-warmup]

Bar (issue 5): launch to first tile <= 20 s (the median of the runs; each run's load average is shown, as the
figures move with what else the machine does). Zoomii: 3 hours (full copy), 3 minutes (lazy EBS snapshots).
Writes ``bench/results/<timestamp>-coldstart.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench import walls
from bench.bars import bar, format_bars
from bench.machine import VENV_BIN, load_average, machine
from bench.processes import Children, run_and_report
from bench.progress import console
from bench.results import RESULTS_DIR, WORK_DIR, write_results
from bench.tables import format_table
from bench.walls import WallSpec
from gigaformat.layout import DatasetDir
from localcloud.seaweedfs import SeaweedS3
from tiler.dataset import LoadedDataset

REPO = Path(__file__).resolve().parents[1]
BIN = VENV_BIN
EC2_RENDER = REPO / "scripts" / "ec2_render.sh"
BUCKET = "coldstart"
DATASET = "covers"
BAR_SECONDS = 20.0
DISTINCT_BAR_SECONDS = 5.0
ExpectedTile = Callable[[int, int, int], bytes]


def _status(http: httpx.Client, url: str) -> int | None:
    try:  # short: a server still starting holds the connection, and the registration poll waits behind this
        return http.get(url, timeout=0.05).status_code
    except httpx.HTTPError:
        return None


def run_step(args: list[str], env: dict[str, str], what: str) -> float:
    started = time.monotonic()
    done = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def dirty_megabytes() -> float | None:
    """The page cache's dirty megabytes, not yet written back (/proc/meminfo), or None off Linux."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("Dirty:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def tile_is_correct(got: bytes, expected: bytes) -> bool:
    """The same bytes, or (another encoder's run) the same decoded pixels."""
    if got == expected:
        return True
    try:
        ours, theirs = (np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in (got, expected))
    except OSError:
        return False
    return ours.shape == theirs.shape and bool(np.array_equal(ours, theirs))


def keep_node_logs(root: Path, logs: Path) -> None:
    """Copy a stopped node's logs (``data/log``, ``run``, ``local``) to ``logs`` (replacing what was there): a
    launch's timeline says when, they say why (the node's root goes with the bench's work folder)."""
    shutil.rmtree(logs, ignore_errors=True)
    for sub in ("data/log", "run", "local"):
        if (root / sub).is_dir():
            shutil.copytree(root / sub, logs / sub.replace("/", "-"))


def one_launch(work: Path, env: dict[str, str], client, warmup: bool, number: int, dataset: str = DATASET,
               expected: ExpectedTile | None = None, replicated_timeout: float = 900, logs: Path | None = None) -> dict:
    """Launch a node, wait for its first tile, stop it; return the timeline (seconds from launch). A node that
    starts lazily (serving before its packs are all down) is stopped only once ``synch.down`` is written, so
    that the time to fully replicated is measured too. ``expected`` (a function of the tile's (z, x, y))
    gives the correct bytes of a tile, which the first tile must be. ``logs``: where the node's logs are kept."""
    root = work / f"node-{number}"
    shutil.rmtree(root, ignore_errors=True)
    args = [str(EC2_RENDER), "--local", "--json", "--bucket", BUCKET, "--root", str(root), "--dataset", dataset]
    if not warmup:
        args.append("--no-warmup")
    # Start clean, as bench.boxlink does: a launch must not pay for the dirty pages the set-up left (the first
    # 20-Gpx launch ran into the kernel's writeback of the 2.9 GB just uploaded: its wheel's GET took 1.7 s
    # instead of 0.02, its bootstrap 2.3 s instead of 0.8, 6.3 s to the first tile against 3.3 and 3.7).
    dirty_before = dirty_megabytes()
    os.sync()
    load_before = os.getloadavg()[0]
    # One client for the launch, made before it: httpx.get() makes a client per call, whose TLS context alone
    # took 60-100 ms of CPU here, counted in the first tile and taken from the node's start on 2 cores.
    http = httpx.Client(timeout=120)
    launched = time.time()
    try:  # the node is stopped however this ends (it runs detached from us)
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"launch failed:\n{done.stderr[-3000:]}")
        record = json.loads(done.stdout.strip().splitlines()[-1])
        key = f"proxy/{record['address']}.p{record['port']}"
        readyz = f"http://{record['address']}:{record['port']}/readyz"
        loaded = None
        deadline = time.monotonic() + 600
        while True:
            if loaded is None and _status(http, readyz) == 200:
                loaded = time.time()  # the render server has the data loaded
            try:
                doc = json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
                if doc["instance_id"] == record["instance_id"]:  # not a record left by an earlier node
                    registered = time.time()
                    break
                time.sleep(0.02)
            except client.exceptions.NoSuchKey:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no registration within 600 s; see {root}/data/log") from None
                time.sleep(0.02)
        answer = http.get(f"http://{doc['address']}:{doc['port']}/tiles/{dataset}/info.json")
        if answer.status_code != 200:
            raise RuntimeError(f"the registered node's info.json: HTTP {answer.status_code}: {answer.text[:300]!r}; "
                               f"see {root}/data/log")
        info = answer.json()
        top, col, row = info["levels"] - 1, info["width"] // 512, info["height"] // 512  # mid-canvas, 1:1
        base = f"http://{doc['address']}:{doc['port']}/tiles/{dataset}/{top}"
        tile_url = f"{base}/{col}/{row}.jpg"
        refused = []  # answers other than 200 from the registered node before its first tile (should be none)
        while (response := http.get(tile_url)).status_code != 200:
            refused.append(response.status_code)
            if len(refused) > 600:
                raise RuntimeError(f"first tile {tile_url}: HTTP {response.status_code}: {response.text[:300]}")
            time.sleep(0.05)
        first_tile = time.time()
        correct = None if expected is None else tile_is_correct(response.content, expected(top, col, row))
        lazy_at_first_tile = not (root / "data" / dataset / "synch.down").exists()
        more = []
        for dx in range(1, 6):  # the next tiles, for what a warm node answers in
            began = time.perf_counter()
            http.get(f"{base}/{col + dx}/{row}.jpg", timeout=60)
            more.append((time.perf_counter() - began) * 1e3)
        # What the node recorded about itself (and, if it compiles its own kernels, when that ended).
        status = json.loads((root / "run" / "status.json").read_text())
        wait_until = time.monotonic() + 120
        while warmup and status.get("kernels") != "release" and "warmup" not in status["phases"] \
                and time.monotonic() < wait_until:
            time.sleep(0.2)
            status = json.loads((root / "run" / "status.json").read_text())
        down_file = root / "data" / dataset / "synch.down"
        wait_until = time.monotonic() + replicated_timeout
        while not down_file.exists():  # a lazy start: fully replicated later
            if time.monotonic() > wait_until:
                raise RuntimeError(f"not fully replicated {replicated_timeout:.0f} s after the first tile; see "
                                   f"{root}/data/log")
            time.sleep(0.1)
        replicated_bytes = walls.dataset_bytes(DatasetDir(root, dataset))
    finally:
        http.close()
        subprocess.run([str(EC2_RENDER), "--local", "--stop", str(root)], env=env, capture_output=True, timeout=120)
        if logs is not None:
            try:
                keep_node_logs(root, logs / f"{dataset}-{number}")
            except OSError as exc:  # the launch's figures stand without them
                console.log(f"node logs of {root} not kept: {exc}")
    phases = status["phases"]
    down = json.loads(down_file.read_text())["time"]
    loaded = loaded or registered
    boxlink_log = root / "data" / "log" / "boxlink.log"
    fetched = next((line for line in boxlink_log.read_text().splitlines() if " fetched dataset=" in line), "")
    marks = {"bootstrap": phases["self_update"], "update": phases["update"], "children": phases["children"],
             "sync": down, "load": loaded, "register": registered, "first tile": first_tile}
    timeline, previous = {}, launched
    for name, at in sorted(marks.items(), key=lambda mark: mark[1]):  # a lazy start syncs after its first tile
        timeline[name] = {"at": at - launched, "phase": at - previous}
        previous = at
    return {"root": str(root), "address": record["address"], "release": status.get("release"),
            "kernels": status.get("kernels"), "load_average_before": load_before, "dirty_mb_before": dirty_before,
            "load_average_after": os.getloadavg()[0],
            "timeline": timeline, "total_seconds": first_tile - launched,
            "warmup_done_at": phases["warmup"] - launched if "warmup" in phases else None,
            "boxlink_fetch": fetched.split(" INFO ", 1)[-1], "next_tiles_ms": more,
            "tile_bytes": len(response.content), "refused_before_first_tile": refused, "dataset": dataset,
            "first_tile_correct": correct, "lazy_at_first_tile": lazy_at_first_tile,
            "replicated_seconds": down - launched, "replicated_bytes": replicated_bytes}


@dataclass(frozen=True)
class ColdstartBenchSettings:
    work: Path = WORK_DIR
    gigapixels: float = 46.0  # the default wall (issue 5's bar)
    # issue 14: walls of distinct covers, the second with >= 10x the first's published bytes (lazy start)
    distinct_walls: tuple[WallSpec, ...] = (WallSpec(2.0, True), WallSpec(20.0, True))
    seed: int = 1
    runs: int = 3
    distinct_runs: int = 1  # launches per distinct wall (each waits for the node to be fully replicated)
    warmup: bool = True     # the node warms its kernels (when the release ships none)
    kernels: bool = True    # the release ships kernels compiled here
    results_dir: Path | None = RESULTS_DIR

    def quick(self) -> ColdstartBenchSettings:
        return replace(self, runs=1, distinct_walls=QUICK_DISTINCT_WALLS)


QUICK_DISTINCT_WALLS = (WallSpec(0.2, True), WallSpec(2.0, True))  # the same ratio, in the quick run's time


def expected_tiles(root: Path):
    """(z, x, y) -> the bytes a node must answer for a JPEG tile of the wall published locally in ``root``
    (the build is deterministic: the same source gives the same stored tiles)."""
    ds = LoadedDataset.open(DatasetDir(root, walls.DATASET))
    return lambda z, x, y: ds.tile_bytes(z, x, y, "jpg", 85)


def published_bytes(client, dataset: str) -> int:
    paginator = client.get_paginator("list_objects_v2")
    return sum(o["Size"] for page in paginator.paginate(Bucket=BUCKET, Prefix=f"data/{dataset}/")
               for o in page.get("Contents", []))


def run(settings: ColdstartBenchSettings) -> dict:
    """Publish the bench's walls and a release to a fresh local S3 (untimed), then the timed launches: ``runs``
    of the default wall, ``distinct_runs`` of each distinct wall."""
    settings.work.mkdir(parents=True, exist_ok=True)
    doc: dict = {"bench": "coldstart", "issue": 5, "settings": {k: str(v) for k, v in asdict(settings).items()},
                 "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="coldstart-bench-", dir=settings.work) as tmp, \
            Children(settings.work / "coldstart-logs") as children:
        work = Path(tmp)
        sources = {}
        if settings.runs:  # --runs 0: only the distinct walls' launches
            walls.prepare_wall(settings.work, settings.gigapixels, children, settings.seed)
            sources[DATASET] = walls.wall_folder(settings.work, settings.gigapixels, settings.seed) / "source"
        copies = {spec: walls.published_copy(settings.work, spec, children, settings.seed)
                  for spec in settings.distinct_walls}  # what tiler publish put in S3 for each, cached
        (work / "s3").mkdir()
        with SeaweedS3(work / "s3") as server:
            server.create_bucket(BUCKET)
            env = {**os.environ, **server.env(), "GIGATILE_BUCKET": BUCKET}
            env.pop("AWS_PROFILE", None)
            setup = {}
            with console.status("publishing the walls and a release (untimed)"):
                for dataset, source in sources.items():
                    setup[f"publish {dataset}"] = run_step(
                        [BIN / "tiler", "publish", source, "--bucket", BUCKET, "--dataset", dataset], env,
                        f"tiler publish {dataset}")
                for spec, copy in copies.items():  # the same objects a tiler publish of the wall puts there
                    started = time.monotonic()
                    walls.upload_published(copy, server.client(), BUCKET, walls.published_dataset(spec))
                    setup[f"upload {walls.published_dataset(spec)}"] = time.monotonic() - started
                setup["release"] = run_step([BIN / "node-bootstrap", "release", "--bucket", BUCKET,
                                             *([] if settings.kernels else ["--no-kernels"])], env, "release")
            console.log("setup (untimed): " + ", ".join(f"{k} {v:.1f} s" for k, v in setup.items()))
            client = server.client()
            node_logs = settings.work / "coldstart-logs" / "nodes"  # each launch's, kept past the run
            runs = []
            for n in range(settings.runs):
                with console.status(f"launch {n + 1}/{settings.runs}"):
                    runs.append(one_launch(work, env, client, settings.warmup, n, logs=node_logs))
                console.log(f"launch {n + 1}: first tile after {runs[-1]['total_seconds']:.2f} s")
            distinct = {}
            for n, spec in enumerate(settings.distinct_walls):
                dataset = walls.published_dataset(spec)
                expected = expected_tiles(spec.prepare(settings.work, children, settings.seed))
                launches = []
                for k in range(settings.distinct_runs):
                    with console.status(f"{spec.name} wall: launch {k + 1}/{settings.distinct_runs}"):
                        launches.append(one_launch(work, env, client, settings.warmup, 100 * (n + 1) + k, dataset,
                                                   expected, logs=node_logs))
                    console.log(f"{spec.name} wall, launch {k + 1}: first tile after "
                                f"{launches[-1]['total_seconds']:.2f} s (correct: {launches[-1]['first_tile_correct']}"
                                f"), fully replicated after {launches[-1]['replicated_seconds']:.2f} s")
                distinct[spec.name] = {"dataset": dataset, "published_bytes": published_bytes(client, dataset),
                                       "runs": launches}
    totals = [r["total_seconds"] for r in runs]
    doc.update(setup_seconds=setup, runs=runs, median_seconds=statistics.median(totals) if totals else None,
               distinct=distinct,
               load_average_end=load_average())
    doc["bars"] = collect_bars(doc)
    if settings.results_dir is not None:
        doc["results_file"] = str(write_results("coldstart", doc, settings.results_dir))
    return doc


def collect_bars(doc: dict) -> list[dict]:
    totals = [r["total_seconds"] for r in doc["runs"]]
    bars = [bar(f"launch -> first tile of a registered node (median of {len(totals)})", doc["median_seconds"],
                "s", BAR_SECONDS, key="coldstart.first-tile",
                note=f"worst {max(totals):.2f} s; Zoomii: 3 h full copy, 3 min lazy EBS")] if totals else []
    walls_ = list(doc.get("distinct", {}).items())
    smallest = walls_[0][1]["published_bytes"] if walls_ else 0
    for name, wall in walls_:
        first = statistics.median(r["total_seconds"] for r in wall["runs"])
        replicated = statistics.median(r["replicated_seconds"] for r in wall["runs"])
        published = wall["published_bytes"]
        size = f"{published / 1e6:,.0f} MB published ({published / smallest:.1f}× the first)"
        bars.append(bar(f"{name} wall: launch -> first correct tile", first, "s", DISTINCT_BAR_SECONDS,
                        key="coldstart.first-tile-distinct", group=name,
                        note=f"{size}; fully replicated after {replicated:.1f} s; lazy at the first tile: "
                             f"{all(r['lazy_at_first_tile'] for r in wall['runs'])}"))
        bars.append(bar(f"{name} wall: launch -> fully replicated (synch.down)", replicated, "s", None,
                        key="coldstart.replicated", group=name, note=size))
        wrong = sum(not r["first_tile_correct"] for r in wall["runs"])
        bars.append(bar(f"{name} wall: first tiles not the published bytes", wrong, "tiles", 0,
                        key="coldstart.first-tile-correct", kind="check", group=name))
    if len(walls_) > 1:
        ratio = walls_[-1][1]["published_bytes"] / smallest
        bars.append(bar(f"published bytes, {walls_[-1][0]} wall / {walls_[0][0]} wall", ratio, "×", 10.0,
                        at_least=True, key="coldstart.size-ratio", kind="check"))
    return bars


def print_report(doc: dict) -> None:
    runs = doc["runs"]
    names = list(runs[0]["timeline"]) if runs else []
    rows = [[name, *(f"{r['timeline'][name]['phase']:.2f}" for r in runs),
             *(f"{r['timeline'][name]['at']:.2f}" for r in runs)] for name in names]
    headers = ["phase", *(f"run {i + 1} s" for i in range(len(runs))), *(f"at {i + 1} s" for i in range(len(runs)))]
    print(format_table(headers, rows))
    for i, run in enumerate(runs):
        if run["warmup_done_at"] is not None:
            kernels = f"compiled on the node, done at {run['warmup_done_at']:.2f} s"
        else:
            kernels = {"release": "shipped with the release", "previous": "copied from the previous release"}.get(
                run["kernels"], "not warmed up")
        print(f"run {i + 1}: load average {run['load_average_before']:.1f} -> {run['load_average_after']:.1f}; "
              f"{run['boxlink_fetch']}; kernels {kernels}; next tiles "
              f"{', '.join(f'{ms:.0f}' for ms in run['next_tiles_ms'])} ms"
              + (f"; BEFORE IT, {len(run['refused_before_first_tile'])} answers "
                 f"{sorted(set(run['refused_before_first_tile']))}" if run["refused_before_first_tile"] else ""))
    rows = [(name, f"{wall['published_bytes'] / 1e6:,.0f}", k + 1, f"{r['total_seconds']:.2f}",
             "yes" if r["first_tile_correct"] else "NO", "yes" if r["lazy_at_first_tile"] else "no",
             f"{r['replicated_seconds']:.2f}", f"{r['replicated_bytes'] / 1e6:,.0f}",
             "?" if r.get("dirty_mb_before") is None else f"{r['dirty_mb_before']:,.0f}",
             " ".join(f"{m}@{t['at']:.1f}" for m, t in r["timeline"].items()))
            for name, wall in doc.get("distinct", {}).items() for k, r in enumerate(wall["runs"])]
    if rows:
        print("\nwalls of distinct covers (lazy start: the node serves before its packs are all down)")
        print(format_table(("wall", "published MB", "launch", "first correct tile s", "correct", "lazy then",
                            "fully replicated s", "node MB", "dirty MB synced before", "timeline (s from launch)"),
                           rows))
    print("\n" + format_bars(doc["bars"]))
    if "results_file" in doc:
        print(f"results: {doc['results_file']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one launch")
    parser.add_argument("--gigapixels", type=float, default=ColdstartBenchSettings.gigapixels)
    parser.add_argument("--runs", type=int, default=None,
                        help="launches of the default wall (0: only the distinct walls' launches)")
    parser.add_argument("--distinct-runs", type=int, default=None, help="launches of each distinct wall")
    parser.add_argument("--no-warmup", action="store_true", help="launch nodes without the kernel warm-up")
    parser.add_argument("--no-kernels", action="store_true", help="release without kernels compiled here")
    parser.add_argument("--work", type=Path, default=ColdstartBenchSettings.work, help="walls and scratch folders")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results JSON goes")
    args = parser.parse_args(argv)
    settings = ColdstartBenchSettings(work=args.work.resolve(), gigapixels=args.gigapixels,
                                      warmup=not args.no_warmup, kernels=not args.no_kernels,
                                      results_dir=args.results_dir)
    settings = settings.quick() if args.quick else settings
    if args.runs is not None:
        settings = replace(settings, runs=args.runs)
    if args.distinct_runs is not None:
        settings = replace(settings, distinct_runs=args.distinct_runs)
    return run_and_report(run, print_report, settings, "every child process and node was stopped", fail_on_bars=True)


if __name__ == "__main__":
    sys.exit(main())
