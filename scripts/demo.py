"""``make demo``: the whole gigatile life cycle on this machine, on a real S3 server.

SeaweedFS (S3) → ``tiler generate`` (the 46-gigapixel covers wall) → ``tiler publish`` →
``node-bootstrap release`` → two render nodes launched with ``scripts/ec2_render.sh --local`` (IMDSv2
emulator, bootstrap, boxlink, self-registration: the real path) → ``tile-proxy`` with the viewer. Then it
waits for Ctrl-C and stops everything it started. Work files live in ``demo-work/``; a second run reuses the
wall, the bucket and the published dataset when they are still valid.

``python scripts/demo.py update`` (``make demo-update``) publishes a diff (a few covers changed) to the
running demo: the open viewer shows the new covers within seconds, without a reload.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from gigaformat.registration import PREFIX as REGISTRY_PREFIX
from gigaformat.s3 import make_client
from localcloud.seaweedfs import SeaweedS3
from tiler.generate import DEFAULT_UNIQUE, generate_wall
from tiler.publish import publish

console = Console(soft_wrap=True)
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BUCKET = "gigatile-demo"
DATASET = "covers"
NODES = ("127.0.0.2", "127.0.0.3")
PROXY = ("127.0.0.1", 8000)


def step(text: str) -> float:
    console.print(f"[bold cyan]==>[/] {text}")
    return time.monotonic()


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def prepare_wall(work: Path, gigapixels: float) -> Path:
    wall, stamp = work / "wall", work / "wall.json"
    wanted = {"gigapixels": gigapixels, "unique": DEFAULT_UNIQUE, "seed": 1}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted and (wall / "items.csv").is_file():
        console.print(f"    reusing the wall in {wall}")
        return wall
    summary = generate_wall(wall, gigapixels, DEFAULT_UNIQUE, 1, progress=True)
    stamp.write_text(json.dumps(wanted))
    console.print(f"    {summary.width} x {summary.height} px ({summary.width * summary.height / 1e9:.1f} Gpx), "
                  f"{summary.items} covers ({summary.unique} distinct) in {summary.seconds:.1f} s")
    return wall


def bucket_summary(client) -> str:
    total = count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            total, count = total + obj["Size"], count + 1
    return f"{count} objects, {total / 1e6:.0f} MB"


def run(cmd: list[str], env: dict[str, str], what: str) -> str:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def registered(client) -> set[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=REGISTRY_PREFIX)
    return {o["Key"][len(REGISTRY_PREFIX):] for o in listed.get("Contents", [])}


class Demo:
    def __init__(self, work: Path, gigapixels: float):
        self.work, self.gigapixels = work, gigapixels
        self.server: SeaweedS3 | None = None
        self.node_roots: list[Path] = []
        self.proxy: subprocess.Popen | None = None

    def up(self) -> None:
        started = time.monotonic()
        (self.work / "s3").mkdir(parents=True, exist_ok=True)
        step("starting SeaweedFS (a real S3 server) on 127.0.0.1")
        self.server = SeaweedS3(self.work / "s3")
        self.server.start()
        os.environ.update(self.server.env())
        env = {**os.environ, "GIGATILE_BUCKET": BUCKET}
        client = make_client()
        try:
            client.head_bucket(Bucket=BUCKET)
        except Exception:
            self.server.create_bucket(BUCKET)
        (self.work / "demo.json").write_text(json.dumps({"endpoint": self.server.endpoint_url}))
        console.print(f"    S3 endpoint {self.server.endpoint_url}, bucket {BUCKET}")
        step(f"generating the covers wall ({self.gigapixels:g} gigapixels)")
        wall = prepare_wall(self.work, self.gigapixels)
        mark = step(f"publishing it to s3://{BUCKET}/data/{DATASET}/")
        result = publish(wall, DATASET, BUCKET, client)
        console.print(f"    generation {result.generation}" + (
            f" ({' + '.join(result.kinds)}): {result.bytes_uploaded / 1e6:.0f} MB in {time.monotonic() - mark:.1f} s"
            if result.kinds else " (already published)") + f"; bucket: {bucket_summary(client)}")
        mark = step("releasing this code to S3 (node-bootstrap release: wheel, fresh bootstrap, current.json)")
        run([str(BIN / "node-bootstrap"), "release", "--bucket", BUCKET, "--source", str(REPO)], env, "release")
        console.print(f"    released in {time.monotonic() - mark:.1f} s")
        self.launch_nodes(env, client)
        self.start_proxy(env)
        url = f"http://{PROXY[0]}:{PROXY[1]}/"
        console.print(f"\n[bold green]browsable in {time.monotonic() - started:.0f} s:[/] open {url}")
        self.tour(url)

    def launch_nodes(self, env: dict[str, str], client) -> None:
        mark = step(f"launching {len(NODES)} render nodes: scripts/ec2_render.sh --local (IMDSv2, bootstrap, boxlink)")
        for address in NODES:
            root = self.work / "nodes" / address
            if (root / "local" / "launch.json").is_file():  # a node left by a run that was killed
                subprocess.run([str(REPO / "scripts" / "ec2_render.sh"), "--local", "--stop", str(root)],
                               env=env, capture_output=True, timeout=60)
            run([str(REPO / "scripts" / "ec2_render.sh"), "--local", "--bucket", BUCKET, "--root", str(root),
                 "--address", address, "--port", "8080", "--sync-interval", "1"], env, f"launch {address}")
            self.node_roots.append(root)
        wanted = {f"{a}.p8080" for a in NODES}
        wait_for(lambda: wanted <= registered(client), 180, "both nodes to register in s3://…/proxy/")
        console.print(f"    registered: {', '.join(sorted(wanted))} after {time.monotonic() - mark:.1f} s")

    def start_proxy(self, env: dict[str, str]) -> None:
        step(f"starting tile-proxy on {PROXY[0]}:{PROXY[1]} (polls s3://{BUCKET}/proxy/, caches on disk)")
        log = (self.work / "proxy.log").open("ab")
        self.proxy = subprocess.Popen(
            [str(BIN / "tile-proxy"), "run", "--bucket", BUCKET, "--host", PROXY[0], "--port", str(PROXY[1]),
             "--cache-dir", str(self.work / "proxy-cache"), "--cache-size", "2G", "--poll-seconds", "1",
             "--viewer-dir", str(REPO / "tiler" / "viewer"), "--access-log", str(self.work / "proxy-access.log")],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://{PROXY[0]}:{PROXY[1]}"

        def live() -> bool:
            try:
                status = httpx.get(f"{base}/proxy/status", timeout=1).json()
                return sum(1 for b in status.get("backends", []) if b.get("healthy")) >= len(NODES)
            except (httpx.HTTPError, ValueError):
                return False
        wait_for(live, 60, "the proxy to see both nodes healthy")

    def tour(self, url: str) -> None:
        roots = " ".join(str(r) for r in self.node_roots)
        console.print(f"""
  a tile through the proxy   curl -sI {url}tiles/{DATASET}/0/0/0.jpg
  proxy status               curl -s {url}proxy/status
  replication status         .venv/bin/boxlink status --root {self.node_roots[0]}
  node status                .venv/bin/node-bootstrap status --root {self.node_roots[0]}
  node logs                  {self.node_roots[0]}/data/log/  (also shipped to s3://{BUCKET}/logs/)
  change a few covers        make demo-update   (the open viewer updates within seconds)
  node roots                 {roots}
Ctrl-C stops everything.""")

    def down(self) -> None:
        if self.proxy is not None and self.proxy.poll() is None:
            os.killpg(self.proxy.pid, signal.SIGTERM)
            try:
                self.proxy.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proxy.pid, signal.SIGKILL)
        for root in self.node_roots:
            subprocess.run([str(REPO / "scripts" / "ec2_render.sh"), "--local", "--stop", str(root)],
                           capture_output=True, timeout=90)
        if self.server is not None:
            self.server.stop()
        (self.work / "demo.json").unlink(missing_ok=True)
        console.print("stopped the proxy, the nodes and SeaweedFS")


def update(work: Path) -> int:
    """Change a few covers of the running demo's wall and publish the diff."""
    state = work / "demo.json"
    if not state.is_file():
        console.print("no demo is running (start one with: make demo)")
        return 2
    endpoint = json.loads(state.read_text())["endpoint"]
    os.environ.update({"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "gigatile",
                       "AWS_SECRET_ACCESS_KEY": "gigatile-secret", "AWS_DEFAULT_REGION": "us-east-1"})
    wall = work / "wall"
    rows = list(csv.reader((wall / "items.csv").open()))
    images = sorted({r[5] for r in rows[1:]})
    rng = random.Random(time.time_ns())
    for row in rng.sample(rows[1:200], 12):  # covers near the top-left corner, where the viewer starts
        row[5] = rng.choice(images)
    with (wall / "items.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    (work / "wall.json").unlink(missing_ok=True)  # the wall no longer matches a fresh generate
    result = publish(wall, DATASET, BUCKET, make_client())
    console.print(f"published generation {result.generation} ({' + '.join(result.kinds) or 'no change'}): "
                  f"{result.changed_items} covers changed, {result.bytes_uploaded / 1e6:.1f} MB")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", default="up", choices=["up", "update"])
    parser.add_argument("--work", type=Path, default=REPO / "demo-work")
    parser.add_argument("--gigapixels", type=float, default=float(os.environ.get("GIGATILE_GIGAPIXELS", "46")))
    parser.add_argument("--once", action="store_true", help="stop right after bringing everything up")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.action == "update":
        return update(args.work)
    demo = Demo(args.work, args.gigapixels)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        demo.up()
        while not args.once:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("\nstopping…")
    except RuntimeError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        return 1
    finally:
        demo.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
