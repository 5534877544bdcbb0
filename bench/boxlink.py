"""The boxlink bars of issue 4: replication MB/s beside ``aws s3 sync`` (and ``s5cmd``), and publish-of-a-diff
to ``synch.down``, in one run against its own SeaweedFS on 127.0.0.1.

Generate and publish a wall (issue 4 asked for at least 1 GB; the default 2-Gpx 800-cover wall is 0.29 GB in
the compact format, and its bar's note says so), then (a) ``boxlink sync`` into an empty node root, (b) ``aws s3
sync`` of the same prefix, (c) ``s5cmd cp`` of the same prefix; each ``rounds`` times in rotating order, into a
fresh folder (after one untimed read of the prefix, so that no tool pays for the server's first reads), timed
as a whole process (start-up included), with a `sync` before each run (nobody inherits
another's dirty pages) and one after it (timed apart: how long until the bytes are on disk; boxlink fsyncs
every object before naming it, the others leave that to the kernel). MB/s is the median of the rounds. Then
publish-of-a-diff to ``synch.down`` on a node running ``boxlink run --interval 1``: from the moment ``publish``
returns (the manifest is written) to ``synch.down`` naming the new generation.

    .venv/bin/python -m bench.boxlink [--quick] [--gigapixels 2] [--unique 800] [--rounds 3] [--distinct-walls 2d,20d]
                                      [--results-dir DIR]

Writes ``bench/results/<timestamp>-boxlink.json``. Needs the AWS CLI and s5cmd (the ``bench`` extra) and GNU
time (Debian ``time``).
"""

from __future__ import annotations

import argparse
import compileall
import csv
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench import walls
from bench.bars import bar, format_bars
from bench.machine import find_tool, load_average, machine, tool_version
from bench.processes import Children, run_and_report
from bench.progress import console
from bench.results import RESULTS_DIR, WORK_DIR, write_results
from bench.tables import format_table
from bench.walls import WallSpec
from gigaformat.layout import DatasetDir
from gigaformat.s3 import make_client, read_manifest
from localcloud.seaweedfs import SeaweedS3
from tiler.generate import generate_wall
from tiler.publish import publish

GNU_TIME = "/usr/bin/time"
DATASET = "bench"
BUCKET = "boxlink-bench"
TOOLS = ("boxlink", "aws s3 sync", "s5cmd")


@dataclass(frozen=True)
class BoxlinkBenchSettings:
    work: Path = WORK_DIR
    gigapixels: float = 2.0
    unique: int = 800          # distinct covers: 2 Gpx x 800 is 0.29 GB published (2026-12-07)
    seed: int = 5
    # issue 14: walls of distinct covers beside it; the 20-Gpx one (2.9 GB published) in the full run, where a
    # process's start-up is not most of the time
    distinct_walls: tuple[WallSpec, ...] = (WallSpec(2.0, True), WallSpec(20.0, True))
    rounds: int = 3
    latency_samples: int = 5
    max_seconds: float = 1200  # the whole run
    settle_seconds: float = 60  # before each round, wait up to this long for the machine to calm down
    results_dir: Path | None = RESULTS_DIR

    def quick(self) -> BoxlinkBenchSettings:
        return replace(self, rounds=3, latency_samples=3, max_seconds=240, settle_seconds=5,  # each tool in each place
                       distinct_walls=self.distinct_walls[:1])


@dataclass(frozen=True)
class Run:
    tool: str
    round: int
    seconds: float
    user_seconds: float
    system_seconds: float
    max_rss_mb: float
    bytes: int
    flush_seconds: float  # a `sync` right after the tool: what it left in the page cache, not yet on disk
    idle_seconds: float | None = None  # boxlink: a second `boxlink sync` of the same, nothing to fetch: what a
    # run costs whatever its size (interpreter, imports, client, manifest, ledger)

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds

    @property
    def durable_mb_per_second(self) -> float:
        return self.bytes / 1e6 / (self.seconds + self.flush_seconds)

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.system_seconds


def timed(command: list[str], env: dict[str, str], timeout: float) -> tuple[float, float, float, float]:
    """Run ``command``; return (wall seconds, user and system CPU seconds, peak RSS in MB). RuntimeError on
    failure or past ``timeout``; the command's whole process group is killed on the way out, however.

    GNU time measures the child: this process is big (it generated and published the wall), and a
    child's peak RSS as seen by wait4 would include pages it had before exec.
    """
    with tempfile.NamedTemporaryFile(prefix="boxlink-bench-time-", delete=False) as handle:
        report = Path(handle.name)
    started = time.monotonic()
    popen = subprocess.Popen([GNU_TIME, "-f", "%U %S %M", "-o", str(report), *command], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = popen.communicate(timeout=timeout)
        seconds = time.monotonic() - started
        if popen.returncode != 0:
            raise RuntimeError(f"failed ({popen.returncode}): {' '.join(command)}\n{stderr.decode()[-3000:]}")
        user, system, rss_kb = report.read_text().split()[-3:]
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(command)}") from None
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
        report.unlink(missing_ok=True)
    return seconds, float(user), float(system), int(rss_kb) / 1024


def byte_compile(packages: tuple[str, ...] = ("boxlink", "gigaformat")) -> None:
    """Byte-compile the repository's packages boxlink imports, as a node's install does (``bootstrap/node/
    install.py``: its wheel's modules are byte-compiled). In a checkout run with PYTHONDONTWRITEBYTECODE=1 no
    ``.pyc`` is ever written, and every ``boxlink sync`` would compile its own modules from source first
    (about 0.1 s of start-up measured here, 2026-12-02) where a node does not; site-packages is compiled by pip."""
    root = Path(__file__).resolve().parent.parent
    for package in packages:
        compileall.compile_dir(root / package, quiet=1)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def commands(tool: str, dest: Path, endpoint: str, dataset: str = DATASET) -> list[str]:
    prefix = f"s3://{BUCKET}/data/{dataset}/"
    if tool == "boxlink":
        return [str(find_tool("boxlink")), "sync", "--root", str(dest), "--dataset", dataset, "--bucket", BUCKET,
                "--log-level", "WARNING"]
    if tool == "aws s3 sync":
        return [str(find_tool("aws")), "s3", "sync", prefix, str(dest), "--endpoint-url", endpoint,
                "--only-show-errors"]
    if tool == "s5cmd":
        return [str(find_tool("s5cmd")), "--endpoint-url", endpoint, "cp", prefix + "*", str(dest) + "/"]
    raise ValueError(tool)


def cpu_pressure() -> float | None:
    """Linux PSI: % of the last 10 s in which some task waited for a CPU (None where unavailable)."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(first.split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def settle(limit: float, quiet: float = 25.0) -> float | None:
    """Wait (at most ``limit`` s) until other work on this machine leaves the CPUs mostly free."""
    deadline = time.monotonic() + limit
    while (pressure := cpu_pressure()) is not None and pressure > quiet and time.monotonic() < deadline:
        time.sleep(2)
    return cpu_pressure()


def throughput(work: Path, env: dict[str, str], endpoint: str, published: int, pack_bytes: int,
               settings: BoxlinkBenchSettings, left, dataset: str = DATASET) -> list[Run]:
    warm = work / "warm-up"  # one untimed read of the prefix first: no tool pays for the server's first reads
    warm.mkdir()
    timed(commands("s5cmd", warm, endpoint, dataset), env, left())
    shutil.rmtree(warm, ignore_errors=True)
    runs = []
    for number in range(settings.rounds):
        order = TOOLS[number % 3:] + TOOLS[:number % 3]  # nobody always goes first (or last)
        pressure = settle(min(settings.settle_seconds, left() / 4))
        console.log(f"round {number + 1}: cpu pressure {pressure}% (PSI avg10), load {os.getloadavg()[0]:.1f}")
        for tool in order:
            dest = work / "dest"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            os.sync()  # start clean: no tool pays for the dirty pages another left behind
            seconds, user, system, rss = timed(commands(tool, dest, endpoint, dataset), env, left())
            flushed = time.monotonic()
            os.sync()
            flush = time.monotonic() - flushed
            if tool == "boxlink":  # the packs stay; the index documents are folded into the generation's state
                folder = DatasetDir(dest, dataset)
                complete = folder.down_generation() == 1 and folder_bytes(folder.objects) == pack_bytes
            else:
                complete = folder_bytes(dest) == published
            if not complete:
                raise RuntimeError(f"{tool} did not bring the whole prefix into {dest}")
            idle = timed(commands(tool, dest, endpoint, dataset), env, left())[0] if tool == "boxlink" else None
            run = Run(tool, number + 1, seconds, user, system, rss, published, flush, idle)
            runs.append(run)
            console.log(f"{dataset} round {number + 1} {tool:<12} {seconds:7.2f} s {run.mb_per_second:7.0f} MB/s "
                        f"(+{flush:4.2f} s to disk) cpu {user:4.1f} user + {system:4.1f} sys, rss {rss:5.0f} MB")
            shutil.rmtree(dest, ignore_errors=True)
    return runs


def edit_one_item(wall: Path, n: int) -> None:
    """Give one item another cover (a small diff)."""
    with (wall / "items.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    images = sorted({r["image"] for r in rows})
    row = rows[(37 * n) % len(rows)]
    row["image"] = images[(images.index(row["image"]) + 1 + n) % len(images)]
    with (wall / "items.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


def latency(work: Path, wall: Path, env: dict[str, str], client, samples: int, timeout: float) -> list[float]:
    root = work / "node"
    folder = DatasetDir(root, DATASET)
    folder.mark_active()
    with (work / "run.log").open("wb") as log:
        run = subprocess.Popen([str(find_tool("boxlink")), "run", "--root", str(root), "--bucket", BUCKET,
                                "--interval", "1", "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                               stderr=log, start_new_session=True)
    seconds = []
    try:
        wait_for(lambda: folder.down_generation() is not None, timeout, "the first sync of the node")
        for n in range(samples):
            edit_one_item(wall, n)
            result = publish(wall, DATASET, BUCKET, client)
            published = time.monotonic()
            wait_for(lambda g=result.generation: folder.down_generation() == g, timeout, "synch.down")
            seconds.append(time.monotonic() - published)
            console.log(f"diff {result.generation}: {result.bytes_uploaded / 1e6:5.1f} MB, synch.down after "
                        f"{seconds[-1]:.2f} s")
    finally:
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if run.poll() is None:
                os.killpg(run.pid, sig)
                try:
                    run.wait(grace)
                except subprocess.TimeoutExpired:
                    continue
    return seconds


def summarize_runs(runs: list[Run], latencies: list[float], published: int) -> dict:
    by_tool = {tool: [r for r in runs if r.tool == tool] for tool in dict.fromkeys(r.tool for r in runs)}
    median = {tool: statistics.median(r.mb_per_second for r in rs) for tool, rs in by_tool.items()}
    durable = {tool: statistics.median(r.durable_mb_per_second for r in rs) for tool, rs in by_tool.items()}
    return {"bytes": published, "rounds": len(by_tool["boxlink"]), "median_mb_per_second": median,
            "ratio_vs_aws": {t: m / median["aws s3 sync"] for t, m in median.items()},
            "median_durable_mb_per_second": durable, "runs": [asdict(r) for r in runs],
            "max_rss_mb": {tool: max(r.max_rss_mb for r in rs) for tool, rs in by_tool.items()},
            "cpu_seconds": {tool: statistics.median(r.cpu_seconds for r in rs) for tool, rs in by_tool.items()},
            "boxlink_idle_seconds": statistics.median(r.idle_seconds for r in by_tool["boxlink"]),
            "diff_to_down_seconds": latencies}


def s5cmd_bar(name: str, f: dict) -> dict:
    """Issue 14's bar: boxlink's durable MB/s (bytes on disk / (whole process + the `sync` after it)) beside
    s5cmd's, measured the same way (s5cmd leaves its bytes in the page cache; boxlink fsyncs each object)."""
    durable, mbs = f["median_durable_mb_per_second"], f["median_mb_per_second"]
    idle = f.get("boxlink_idle_seconds")  # not in results written before 2026-12-03
    return bar(f"{name} wall: boxlink sync durable MB/s, verifying every byte (median of {f['rounds']})",
               durable["boxlink"], "MB/s", 1.0, at_least=True, anchor="s5cmd", anchor_figure=durable["s5cmd"],
               key="boxlink.sync-s5cmd", group=name,
               note=f"{f['bytes'] / 1e6:,.0f} MB; process time alone: {mbs['boxlink']:.0f} vs {mbs['s5cmd']:.0f} "
                    f"MB/s ({mbs['boxlink'] / mbs['s5cmd']:.2f}×)"
                    + ("" if idle is None else f"; a boxlink sync with nothing to fetch: {idle:.2f} s"))


def collect_bars(doc: dict) -> list[dict]:
    f, gb = doc["figures"], doc["figures"]["bytes"] / 1e9
    note = None if gb >= 1.0 else f"{gb:.2f} GB, not ≥ 1 GB"
    rounds = f["rounds"]
    mbs = f["median_mb_per_second"]
    bars = [bar(f"boxlink sync MB/s, verifying every byte (median of {rounds})", mbs["boxlink"], "MB/s", 1.0,
                at_least=True, anchor="aws s3 sync", anchor_figure=mbs["aws s3 sync"], key="boxlink.sync", note=note),
            s5cmd_bar(doc["wall"]["name"], f)]
    for distinct in doc.get("distinct", []):
        bars.append(s5cmd_bar(distinct["wall"]["name"], distinct["figures"]))
    if f["diff_to_down_seconds"]:
        samples = f["diff_to_down_seconds"]
        bars.append(bar(f"diff publish -> synch.down, worst of {len(samples)}", max(samples), "s", 3.0,
                        key="boxlink.diff-to-down", note=f"median {statistics.median(samples):.2f} s"))
    return bars


def distinct_throughput(settings: BoxlinkBenchSettings, spec: WallSpec, work: Path, env: dict[str, str],
                        endpoint: str, client, left) -> dict:
    """The same rounds on a wall of distinct covers (cached under ``work``) as its own dataset: the objects a
    ``tiler publish`` of it put in S3 (kept by the datasets step) put into this bucket (untimed)."""
    dataset = walls.published_dataset(spec)
    with Children(settings.work / "boxlink-logs") as children:
        copy = walls.published_copy(settings.work, spec, children)  # what tiler publish put in S3, cached
    started = time.monotonic()
    walls.upload_published(copy, client, BUCKET, dataset)
    uploaded = time.monotonic() - started
    manifest = read_manifest(client, BUCKET, dataset)
    objects = [o for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"data/{dataset}/")
               for o in page.get("Contents", [])]
    published = sum(o["Size"] for o in objects)
    pack_bytes = sum(o.size for o in manifest.objects().values() if o.key.endswith(".bin"))
    console.log(f"{spec.name} wall: {len(objects)} objects, {published / 1e9:.2f} GB put in {uploaded:.0f} s")
    runs = throughput(work, env, endpoint, published, pack_bytes, settings, left, dataset)
    return {"wall": {"name": spec.name, "objects": len(objects), "bytes": published, "upload_seconds": uploaded},
            "figures": summarize_runs(runs, [], published), "load_average": load_average()}


def run(settings: BoxlinkBenchSettings) -> dict:
    missing = [name for name in ("aws", "s5cmd", "boxlink") if find_tool(name) is None]
    if missing or not Path(GNU_TIME).exists():
        raise RuntimeError(f"missing {', '.join(missing + ([GNU_TIME] if not Path(GNU_TIME).exists() else []))}; "
                           "make bench installs them")
    byte_compile()
    began = time.monotonic()
    left = lambda: max(settings.max_seconds - (time.monotonic() - began), 10)  # noqa: E731
    doc: dict = {"bench": "boxlink", "issue": 4, "settings": {k: str(v) for k, v in asdict(settings).items()},
                 "machine": machine(), "tools": {"aws": tool_version(["aws", "--version"]),
                                                 "s5cmd": tool_version(["s5cmd", "version"])}}
    settings.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="boxlink-bench-", dir=settings.work) as tmp:
        work = Path(tmp)
        (work / "weed").mkdir()
        with SeaweedS3(work / "weed") as server:
            os.environ.update(server.env())
            env = {**os.environ, "GIGATILE_BUCKET": BUCKET}
            client = make_client()
            client.create_bucket(Bucket=BUCKET)
            wall = work / "wall"
            with console.status(f"generating and publishing the {settings.gigapixels:g}-Gpx wall "
                                f"({settings.unique} covers)"):
                summary = generate_wall(wall, settings.gigapixels, settings.unique, seed=settings.seed)
                result = publish(wall, DATASET, BUCKET, client)
            manifest = read_manifest(client, BUCKET, DATASET)
            listing = client.list_objects_v2(Bucket=BUCKET, Prefix=f"data/{DATASET}/")["Contents"]
            published = sum(o["Size"] for o in listing)  # what all three move: the objects and the manifest
            doc["wall"] = {"name": f"{settings.gigapixels:g}-Gpx {settings.unique}-cover", "width": summary.width,
                           "height": summary.height, "items": summary.items, "objects": len(listing),
                           "bytes": published, "publish_seconds": result.seconds}
            console.log(f"published {len(listing)} objects, {published / 1e9:.2f} GB in {result.seconds:.0f} s")
            pack_bytes = sum(o.size for o in manifest.objects().values() if o.key.endswith(".bin"))
            doc["load_average_sync"] = load_average()
            runs = throughput(work, env, server.endpoint_url, published, pack_bytes, settings, left)
            doc["distinct"] = [distinct_throughput(settings, spec, work, env, server.endpoint_url, client, left)
                               for spec in settings.distinct_walls]
            doc["load_average_latency"] = load_average()
            latencies = latency(work, wall, env, client, settings.latency_samples, timeout=min(left(), 120))
    doc["figures"] = summarize_runs(runs, latencies, published)
    doc["memory"] = [{"process": tool, "when": "peak (GNU time)", "rss_mb": rss, "pss_mb": None, "processes": 1}
                     for tool, rss in doc["figures"]["max_rss_mb"].items()]
    doc["load_average_end"] = load_average()
    doc["bars"] = collect_bars(doc)
    if settings.results_dir is not None:
        doc["results_file"] = str(write_results("boxlink", doc, settings.results_dir))
    return doc


def print_report(doc: dict) -> None:
    f = doc["figures"]
    mbs, durable, aws = f["median_mb_per_second"], f["median_durable_mb_per_second"], "aws s3 sync"
    rows = [(tool, f"{mbs[tool]:.0f}", f"{mbs[tool] / mbs[aws]:.2f}×", f"{durable[tool]:.0f}",
             f"{durable[tool] / durable[aws]:.2f}×", f"{f['cpu_seconds'][tool]:.1f}", f"{f['max_rss_mb'][tool]:.0f}",
             "yes" if tool == "boxlink" else "no") for tool in mbs]
    print(f"sync of {f['bytes'] / 1e9:.2f} GB, median of {f['rounds']} rounds "
          "(durable: until the bytes are on disk, the tool's time + a `sync` right after it)")
    print(format_table(("tool", "MB/s", "vs aws", "durable MB/s", "vs aws", "cpu s", "peak RSS MB",
                        "verifies sha256"), rows))
    print(f"a boxlink sync with nothing to fetch (what every run costs): {f['boxlink_idle_seconds']:.2f} s")
    for distinct in doc.get("distinct", []):
        d = distinct["figures"]
        print(f"{distinct['wall']['name']} wall: {d['bytes'] / 1e9:.2f} GB; durable MB/s "
              + ", ".join(f"{tool} {v:.0f}" for tool, v in d["median_durable_mb_per_second"].items())
              + f"; boxlink with nothing to fetch {d['boxlink_idle_seconds']:.2f} s")
    print("\n" + format_bars(doc["bars"]))
    if "results_file" in doc:
        print(f"results: {doc['results_file']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.boxlink", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, 3 latency samples, a shorter settle")
    parser.add_argument("--gigapixels", type=float, default=BoxlinkBenchSettings.gigapixels)
    parser.add_argument("--unique", type=int, default=BoxlinkBenchSettings.unique)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--latency-samples", type=int, default=None)
    parser.add_argument("--distinct-walls", default=None,
                        help="walls of distinct covers measured beside it, e.g. 2d,20d (default: 2d,20d; 2d with "
                             "--quick)")
    parser.add_argument("--work", type=Path, default=BoxlinkBenchSettings.work, help="scratch folders go here")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results JSON goes")
    args = parser.parse_args(argv)
    settings = BoxlinkBenchSettings(work=args.work.resolve(), gigapixels=args.gigapixels, unique=args.unique,
                                    results_dir=args.results_dir)
    settings = settings.quick() if args.quick else settings
    if args.distinct_walls is not None:
        chosen = tuple(WallSpec.parse(w) for w in args.distinct_walls.split(",") if w)
        settings = replace(settings, distinct_walls=chosen)
    if args.rounds is not None:
        settings = replace(settings, rounds=args.rounds)
    if args.latency_samples is not None:
        settings = replace(settings, latency_samples=args.latency_samples)
    return run_and_report(run, print_report, settings)


if __name__ == "__main__":
    sys.exit(main())
