"""boxlink throughput and latency, by hand (not in CI).

    .venv/bin/python bench/boxlink.py [--gigapixels 2] [--unique 800] [--rounds 3] [--work /tmp] [--keep]

In one run, against its own local SeaweedFS: generate and publish a wall of at least 1 GB, then
(a) ``boxlink sync`` into an empty node root, (b) ``aws s3 sync`` of the same prefix, (c) ``s5cmd cp``
of the same prefix; each ``--rounds`` times in rotating order, into a fresh folder, timed as a whole
process (start-up included), with a `sync` before each run (nobody inherits another's dirty pages) and
one after it (timed apart: how long until the bytes are on disk; boxlink fsyncs every object before
naming it, the others leave that to the kernel). Prints MB/s (median) and the ratio to aws, plain and
"until durable". Then measures publish-of-a-diff
to ``synch.down`` on a node running ``boxlink run --interval 1``: from the moment ``publish`` returns
(the manifest is written) to ``synch.down`` naming the new generation. The figures are also written to
``bench/results/boxlink-<time>.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from localcloud.seaweedfs import SeaweedS3  # noqa: E402
from tiler.generate import generate_wall  # noqa: E402
from tiler.localstore import DatasetDir  # noqa: E402
from tiler.publish import publish  # noqa: E402
from tiler.s3io import make_client, read_manifest  # noqa: E402

BIN = Path(sys.executable).parent
GNU_TIME = "/usr/bin/time"
DATASET = "bench"
BUCKET = "boxlink-bench"


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
    """Run ``command``; return (wall seconds, user and system CPU seconds, peak RSS in MB). Raises on failure.

    GNU time measures the child: this process is big (it generated and published the wall), and a
    child's peak RSS as seen by wait4 would include pages it had before exec.
    """
    with tempfile.NamedTemporaryFile(prefix="boxlink-bench-time-", delete=False) as handle:
        report = Path(handle.name)
    started = time.monotonic()
    try:
        done = subprocess.run([GNU_TIME, "-f", "%U %S %M", "-o", str(report), *command], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr.decode()[-3000:]}")
        user, system, rss_kb = report.read_text().split()[-3:]
    except subprocess.TimeoutExpired:
        raise SystemExit(f"timed out after {timeout:.0f} s: {' '.join(command)}") from None
    finally:
        report.unlink(missing_ok=True)
    return seconds, float(user), float(system), int(rss_kb) / 1024


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def commands(tool: str, dest: Path, endpoint: str) -> list[str]:
    prefix = f"s3://{BUCKET}/data/{DATASET}/"
    if tool == "boxlink":
        return [str(BIN / "boxlink"), "sync", "--root", str(dest), "--dataset", DATASET, "--bucket", BUCKET,
                "--log-level", "WARNING"]
    if tool == "aws s3 sync":
        return [str(BIN / "aws"), "s3", "sync", prefix, str(dest), "--endpoint-url", endpoint, "--only-show-errors"]
    if tool == "s5cmd":
        return [str(BIN / "s5cmd"), "--endpoint-url", endpoint, "cp", prefix + "*", str(dest) + "/"]
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


def throughput(work: Path, env: dict[str, str], endpoint: str, published: int, pack_bytes: int, rounds: int,
               timeout: float, settle_seconds: float) -> list[Run]:
    tools = ["boxlink", "aws s3 sync", "s5cmd"]
    runs = []
    for number in range(rounds):
        order = tools[number % 3:] + tools[:number % 3]  # nobody always goes first (or last)
        pressure = settle(settle_seconds)
        print(f"  round {number + 1}: cpu pressure {pressure}% (PSI avg10), load {os.getloadavg()[0]:.1f}",
              flush=True)
        for tool in order:
            dest = work / "dest"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            os.sync()  # start clean: no tool pays for the dirty pages another left behind
            seconds, user, system, rss = timed(commands(tool, dest, endpoint), env, timeout)
            flushed = time.monotonic()
            os.sync()
            flush = time.monotonic() - flushed
            if tool == "boxlink":  # the packs stay; the index documents are folded into the generation's state
                folder = DatasetDir(dest, DATASET)
                complete = folder.down_generation() == 1 and folder_bytes(folder.objects) == pack_bytes
            else:
                complete = folder_bytes(dest) == published
            if not complete:
                raise SystemExit(f"{tool} did not bring the whole prefix into {dest}")
            run = Run(tool, number + 1, seconds, user, system, rss, published, flush)
            runs.append(run)
            print(f"  round {number + 1} {tool:<12} {seconds:7.2f} s {run.mb_per_second:7.0f} MB/s "
                  f"(+{flush:4.2f} s to disk) cpu {user:4.1f} user + {system:4.1f} sys, rss {rss:5.0f} MB",
                  flush=True)
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


def latency(work: Path, wall: Path, env: dict[str, str], client, samples: int, timeout: float) -> list[float]:
    root = work / "node"
    folder = DatasetDir(root, DATASET)
    folder.mark_active()
    run = subprocess.Popen([str(BIN / "boxlink"), "run", "--root", str(root), "--bucket", BUCKET, "--interval", "1",
                            "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                           stderr=(work / "run.log").open("wb"), start_new_session=True)
    seconds = []
    try:
        wait_until(lambda: folder.down_generation() is not None, timeout, "the first sync of the node")
        for n in range(samples):
            edit_one_item(wall, n)
            result = publish(wall, DATASET, BUCKET, client)
            published = time.monotonic()
            wait_until(lambda g=result.generation: folder.down_generation() == g, timeout, "synch.down")
            seconds.append(time.monotonic() - published)
            print(f"  diff {result.generation}: {result.bytes_uploaded / 1e6:5.1f} MB, synch.down after "
                  f"{seconds[-1]:.2f} s", flush=True)
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        run.wait(15)
    return seconds


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


def report(runs: list[Run], latencies: list[float], published: int) -> dict:
    by_tool = {tool: [r for r in runs if r.tool == tool] for tool in dict.fromkeys(r.tool for r in runs)}
    median = {tool: statistics.median(r.mb_per_second for r in rs) for tool, rs in by_tool.items()}
    aws = median["aws s3 sync"]
    print(f"\nsync of {published / 1e9:.2f} GB ({published} bytes), median of {len(by_tool['boxlink'])} rounds:")
    print(f"{'tool':<13} {'MB/s':>7} {'best':>7} {'vs aws':>7} {'durable':>8} {'vs aws':>7} {'cpu s':>6} "
          f"{'rss MB':>7}  verifies sha256")
    durable = {tool: statistics.median(r.durable_mb_per_second for r in rs) for tool, rs in by_tool.items()}
    for tool, rs in by_tool.items():
        print(f"{tool:<13} {median[tool]:7.0f} {max(r.mb_per_second for r in rs):7.0f} {median[tool] / aws:6.2f}x "
              f"{durable[tool]:8.0f} {durable[tool] / durable['aws s3 sync']:6.2f}x "
              f"{statistics.median(r.cpu_seconds for r in rs):6.1f} {max(r.max_rss_mb for r in rs):7.0f}  "
              f"{'yes' if tool == 'boxlink' else 'no'}")
    print("durable: MB/s until the bytes are on disk (the tool's time + a `sync` right after it; boxlink "
          "fsyncs each object before naming it)")
    if latencies:
        print(f"\npublish of a diff -> synch.down (boxlink run --interval 1), {len(latencies)} samples: "
              f"median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s (bar 3 s)")
    return {"bytes": published, "median_mb_per_second": median,
            "ratio_vs_aws": {t: m / aws for t, m in median.items()}, "median_durable_mb_per_second": durable,
            "runs": [asdict(r) for r in runs],
            "diff_to_down_seconds": latencies}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigapixels", type=float, default=2.0, help="wall size in gigapixels")
    parser.add_argument("--unique", type=int, default=800, help="distinct covers (each ~1.6 MB of mips)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="parent folder of the scratch folder")
    parser.add_argument("--max-seconds", type=float, default=1800, help="give up after this long")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--settle", type=float, default=60,
                        help="before each round, wait up to this long for the machine's other work to calm down")
    args = parser.parse_args()
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="boxlink-bench-", dir=args.work))
    (work / "weed").mkdir()
    server = SeaweedS3(work / "weed")
    try:
        server.start()
        os.environ.update(server.env())
        env = {**os.environ, "GIGATILE_BUCKET": BUCKET}
        client = make_client()
        client.create_bucket(Bucket=BUCKET)
        wall = work / "wall"
        summary = generate_wall(wall, args.gigapixels, args.unique, seed=5)
        print(f"wall: {summary.width} x {summary.height}, {summary.items} items", flush=True)
        result = publish(wall, DATASET, BUCKET, client)
        manifest = read_manifest(client, BUCKET, DATASET)
        listing = client.list_objects_v2(Bucket=BUCKET, Prefix=f"data/{DATASET}/")["Contents"]
        published = sum(o["Size"] for o in listing)  # what all three move: the objects and the manifest
        print(f"published {len(listing)} objects, {published / 1e9:.2f} GB in {result.seconds:.0f} s", flush=True)
        if published < 1e9:
            print("warning: under 1 GB published; use a larger --gigapixels", flush=True)
        left = lambda: max(args.max_seconds - (time.monotonic() - began), 10)  # noqa: E731
        pack_bytes = sum(o.size for o in manifest.objects().values() if o.key.endswith(".bin"))
        runs = throughput(work, env, server.endpoint_url, published, pack_bytes, args.rounds, timeout=left(),
                          settle_seconds=args.settle)
        latencies = latency(work, wall, env, client, args.latency_samples, timeout=min(left(), 120))
        figures = report(runs, latencies, published)
        out = HERE / "results" / time.strftime("boxlink-%Y%m%dT%H%M%S.json")
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"gigapixels": args.gigapixels, "cpus": os.cpu_count(),
                                   "load_average": os.getloadavg(), **figures}, indent=1))
        print(f"\nwritten {out}")
        return 0
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
