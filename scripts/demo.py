"""``make demo``: the whole gigatile life cycle on this machine, on a real S3 server.

SeaweedFS (S3) → ``tiler generate`` (the 46-gigapixel covers wall) → ``tiler publish`` → render nodes
→ tile-proxy, then it waits for Ctrl-C and stops everything it started. Work files live in ``demo-work/``;
a second run reuses the wall, the bucket and the published dataset when they are still valid.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from rich.console import Console

from localcloud.seaweedfs import SeaweedS3
from tiler.generate import DEFAULT_UNIQUE, generate_wall
from tiler.manifest import manifest_key
from tiler.publish import publish
from tiler.s3io import make_client

console = Console(soft_wrap=True)
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BUCKET = "gigatile-demo"
DATASET = "covers"


def step(text: str) -> float:
    console.print(f"[bold cyan]==>[/] {text}")
    return time.monotonic()


def prepare_wall(work: Path, gigapixels: float) -> Path:
    wall = work / "wall"
    stamp = work / "wall.json"
    wanted = {"gigapixels": gigapixels, "unique": DEFAULT_UNIQUE, "seed": 1}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted and (wall / "items.csv").is_file():
        console.print(f"    reusing the wall in {wall}")
        return wall
    summary = generate_wall(wall, gigapixels, DEFAULT_UNIQUE, 1, progress=True)
    stamp.write_text(json.dumps(wanted))
    console.print(f"    {summary.width} x {summary.height} px ({summary.width * summary.height / 1e9:.1f} Gpx), "
                  f"{summary.items} covers ({summary.unique} distinct) in {summary.seconds:.1f} s")
    return wall


def list_bucket(client) -> None:
    total, count = 0, 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            total += obj["Size"]
            count += 1
            if count <= 12:
                console.print(f"    s3://{BUCKET}/{obj['Key']}  {obj['Size'] / 1e6:.1f} MB")
    console.print(f"    {count} objects, {total / 1e6:.0f} MB in s3://{BUCKET}/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "demo-work")
    parser.add_argument("--gigapixels", type=float, default=float(os.environ.get("GIGATILE_GIGAPIXELS", "46")))
    parser.add_argument("--once", action="store_true", help="stop after bringing everything up (no waiting)")
    args = parser.parse_args()
    started = time.monotonic()
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "s3").mkdir(exist_ok=True)
    step("starting SeaweedFS (a real S3 server) on 127.0.0.1")
    server = SeaweedS3(args.work / "s3")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1) or (_ for _ in ()).throw(KeyboardInterrupt))
    server.start()
    try:
        os.environ.update(server.env())
        client = make_client()
        try:
            client.head_bucket(Bucket=BUCKET)
        except Exception:
            server.create_bucket(BUCKET)
        console.print(f"    S3 endpoint {server.endpoint_url}, bucket {BUCKET}")
        step(f"generating the covers wall ({args.gigapixels:g} gigapixels)")
        wall = prepare_wall(args.work, args.gigapixels)
        mark = step(f"publishing it to s3://{BUCKET}/data/{DATASET}/")
        result = publish(wall, DATASET, BUCKET, client)
        if result.kinds:
            console.print(f"    generation {result.generation} ({' + '.join(result.kinds)}): "
                          f"{result.bytes_uploaded / 1e6:.0f} MB in {time.monotonic() - mark:.1f} s")
        else:
            console.print(f"    already published: generation {result.generation}")
        step("what is in the bucket")
        list_bucket(client)
        console.print(f"    manifest: s3://{BUCKET}/{manifest_key(DATASET)}")
        console.print(f"[bold green]ready in {time.monotonic() - started:.0f} s[/]")
        if not args.once:
            console.print("Ctrl-C stops everything.")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        server.stop()
        console.print("stopped SeaweedFS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
