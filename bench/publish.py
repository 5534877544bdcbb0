"""Publish throughput beside ``aws s3 cp --recursive`` of the same bytes to the same S3 server.

Run by hand: ``.venv/bin/python bench/publish.py [--gigapixels 46]``. Starts its own SeaweedFS on
127.0.0.1, generates the wall, publishes it (timing the upload phase and the whole publish), then
uploads the very same pack files with the AWS CLI, and prints MB/s of each and the ratio (bar: >= 1.0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localcloud.seaweedfs import SeaweedS3
from tiler.generate import generate_wall
from tiler.local_publish import publish_local
from tiler.localstore import DatasetDir
from tiler.publish import publish
from tiler.s3io import make_client

BIN = Path(sys.executable).parent


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigapixels", type=float, default=46.0)
    parser.add_argument("--unique", type=int, default=256)
    args = parser.parse_args()
    aws = shutil.which("aws", path=str(BIN)) or shutil.which("aws")
    if aws is None:
        print("the AWS CLI is needed: .venv/bin/pip install awscli", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gigatile-bench-publish-") as tmp:
        work = Path(tmp)
        (work / "s3").mkdir()
        server = SeaweedS3(work / "s3")
        server.start()
        try:
            os.environ.update(server.env())
            server.create_bucket("bench")
            wall = generate_wall(work / "wall", args.gigapixels, args.unique)
            print(f"wall: {wall.width} x {wall.height} px, {wall.items} items, {wall.unique} covers")
            result = publish(work / "wall", "covers", "bench", make_client())
            ours_mb = result.bytes_uploaded / 1e6
            # The same bytes, on disk, for the AWS CLI: a local build writes the identical pack files.
            folder = DatasetDir(work / "node", "covers")
            publish_local(work / "wall", folder)
            copied = _tree_bytes(folder.objects)
            started = time.monotonic()
            subprocess.run([aws, "s3", "cp", "--recursive", "--only-show-errors", str(folder.objects),
                            "s3://bench/aws-copy/", "--endpoint-url", server.endpoint_url],
                           check=True, env={**os.environ, **server.env()})
            aws_seconds = time.monotonic() - started
        finally:
            server.stop()
    ours_rate = ours_mb / result.upload_seconds
    aws_rate = copied / 1e6 / aws_seconds
    print(f"{'':28}{'MB':>10}{'seconds':>10}{'MB/s':>10}")
    print(f"{'tiler publish (upload)':28}{ours_mb:10.0f}{result.upload_seconds:10.1f}{ours_rate:10.0f}")
    print(f"{'tiler publish (end to end)':28}{ours_mb:10.0f}{result.seconds:10.1f}{ours_mb / result.seconds:10.0f}")
    print(f"{'aws s3 cp --recursive':28}{copied / 1e6:10.0f}{aws_seconds:10.1f}{aws_rate:10.0f}")
    ratio = ours_rate / aws_rate
    print(f"ratio (upload MB/s, ours / aws): {ratio:.2f}  bar >= 1.0: {'PASS' if ratio >= 1.0 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
