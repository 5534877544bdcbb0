"""The publish bar of issue 2: ``tiler publish`` upload MB/s beside ``aws s3 cp --recursive`` of the same
pack files to the same S3 server, in one run.

Starts its own SeaweedFS on 127.0.0.1 (in a temp folder under ``--work``) and warms it with one untimed copy
(SeaweedFS grows its volumes on the first writes, which would cost whoever goes first); then publishes the
bench's wall (cached under ``bench/work/``, shared with the render bench) as a snapshot, timing the upload phase
and the whole publish; then uploads the pack files of the same wall, built locally from the same source, with
the AWS CLI.

    .venv/bin/python -m bench.publish [--gigapixels 46] [--quick] [--results-dir DIR]

Writes ``bench/results/<timestamp>-publish.json``. Needs the AWS CLI (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import walls
from bench.bars import bar, format_bars
from bench.machine import find_tool, load_average, machine, tool_version
from bench.processes import Children, run_and_report
from bench.progress import console
from bench.results import RESULTS_DIR, WORK_DIR, write_results
from bench.tables import format_table
from gigaformat.layout import DatasetDir
from gigaformat.s3 import make_client
from localcloud.seaweedfs import SeaweedS3
from tiler.publish import publish

BUCKET = "bench-publish"


@dataclass(frozen=True)
class PublishBenchSettings:
    work: Path = WORK_DIR
    gigapixels: float = 46.0
    seed: int = 1
    aws_timeout: float = 600.0
    results_dir: Path | None = RESULTS_DIR

    def quick(self) -> PublishBenchSettings:
        return self  # one publish and one copy of the default wall already take well under a minute


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run(settings: PublishBenchSettings) -> dict:
    aws = find_tool("aws")
    if aws is None:
        raise RuntimeError("the AWS CLI is needed: make bench installs it (.venv/bin/pip install awscli)")
    doc: dict = {"bench": "publish", "issue": 2, "settings": {k: str(v) for k, v in asdict(settings).items()},
                 "machine": machine(), "tools": {"aws": tool_version(["aws", "--version"])}}
    settings.work.mkdir(parents=True, exist_ok=True)
    with Children(settings.work / "publish-logs") as children, \
            tempfile.TemporaryDirectory(prefix="publish-bench-", dir=settings.work) as tmp:
        root = walls.prepare_wall(settings.work, settings.gigapixels, children, settings.seed)
        source = walls.wall_folder(settings.work, settings.gigapixels, settings.seed) / "source"
        packs = DatasetDir(root, walls.DATASET).objects  # the same source, built locally: the same pack files
        (Path(tmp) / "s3").mkdir()
        with SeaweedS3(Path(tmp) / "s3") as s3:
            s3.create_bucket(BUCKET)
            os.environ.update(s3.env())
            # SeaweedFS grows its volumes on the first writes: one untimed copy first, so that no tool pays it.
            with console.status("warm-up: one untimed aws s3 cp of the pack files"):
                children.run([aws, "s3", "cp", "--recursive", "--only-show-errors", packs, f"s3://{BUCKET}/warm-up/",
                              "--endpoint-url", s3.endpoint_url], "aws-warm-up.log", settings.aws_timeout,
                             env={**os.environ, **s3.env()})
            doc["load_average_publish"] = load_average()
            with console.status(f"tiler publish of the {settings.gigapixels:g}-Gpx wall"):
                result = publish(source, walls.DATASET, BUCKET, make_client())
            doc["load_average_aws"] = load_average()
            copied = _tree_bytes(packs)
            with console.status("aws s3 cp --recursive of the same pack files"):
                started = time.monotonic()
                children.run([aws, "s3", "cp", "--recursive", "--only-show-errors", packs, f"s3://{BUCKET}/aws-copy/",
                              "--endpoint-url", s3.endpoint_url], "aws-cp.log", settings.aws_timeout,
                             env={**os.environ, **s3.env()})
                aws_seconds = time.monotonic() - started
    ours = {"bytes": result.bytes_uploaded, "upload_seconds": result.upload_seconds, "seconds": result.seconds,
            "upload_mb_per_s": result.bytes_uploaded / 1e6 / result.upload_seconds,
            "end_to_end_mb_per_s": result.bytes_uploaded / 1e6 / result.seconds}
    anchor = {"bytes": copied, "seconds": aws_seconds, "mb_per_s": copied / 1e6 / aws_seconds}
    doc.update(publish=ours, aws=anchor, load_average_end=load_average())
    doc["bars"] = [
        bar("tiler publish upload MB/s", ours["upload_mb_per_s"], "MB/s", 1.0, at_least=True,
            anchor="aws s3 cp --recursive", anchor_figure=anchor["mb_per_s"], key="publish.upload"),
        bar("tiler publish end to end (build + upload)", ours["end_to_end_mb_per_s"], "MB/s", None,
            key="publish.end-to-end"),
    ]
    if settings.results_dir is not None:
        doc["results_file"] = str(write_results("publish", doc, settings.results_dir))
    return doc


def print_report(doc: dict) -> None:
    ours, aws = doc["publish"], doc["aws"]
    print(format_table(("", "MB", "seconds", "MB/s"), [
        ("tiler publish (upload)", f"{ours['bytes'] / 1e6:.0f}", f"{ours['upload_seconds']:.1f}",
         f"{ours['upload_mb_per_s']:.0f}"),
        ("tiler publish (end to end)", f"{ours['bytes'] / 1e6:.0f}", f"{ours['seconds']:.1f}",
         f"{ours['end_to_end_mb_per_s']:.0f}"),
        ("aws s3 cp --recursive", f"{aws['bytes'] / 1e6:.0f}", f"{aws['seconds']:.1f}", f"{aws['mb_per_s']:.0f}")]))
    print("\n" + format_bars(doc["bars"]))
    if "results_file" in doc:
        print(f"results: {doc['results_file']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish", description=__doc__.splitlines()[0])
    parser.add_argument("--gigapixels", type=float, default=PublishBenchSettings.gigapixels)
    parser.add_argument("--quick", action="store_true", help="the same run (it is already short)")
    parser.add_argument("--work", type=Path, default=PublishBenchSettings.work)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results JSON goes")
    args = parser.parse_args(argv)
    settings = PublishBenchSettings(work=args.work.resolve(), gigapixels=args.gigapixels, results_dir=args.results_dir)
    settings = settings.quick() if args.quick else settings
    return run_and_report(run, print_report, settings)


if __name__ == "__main__":
    sys.exit(main())
