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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench import walls
from bench.bars import bar, format_bars
from bench.machine import VENV_BIN, find_tool, load_average, machine, tool_version
from bench.processes import Children, TreePeak, run_and_report
from bench.progress import console
from bench.render import time_dzsave
from bench.results import RESULTS_DIR, WORK_DIR, write_results
from bench.tables import format_table
from bench.walls import WallSpec
from gigaformat.layout import DatasetDir
from gigaformat.levels import Geometry
from gigaformat.s3 import make_client
from localcloud.seaweedfs import SeaweedS3
from tiler.coarse_raster import plan_levels, raster_size
from tiler.dataset import LoadedDataset
from tiler.publish import publish
from tiler.settings import ServeSettings

BUCKET = "bench-publish"


@dataclass(frozen=True)
class PublishBenchSettings:
    work: Path = WORK_DIR
    gigapixels: float = 46.0
    seed: int = 1
    aws_timeout: float = 600.0
    # issue 14: tiler publish's peak memory on a wall of distinct covers and on one 10x its size, covers/s
    # beside vips dzsave of the same canvas (where the canvas can be flattened for it); the node's bytes per
    # gigapixel beside dzsave's pyramid on footprint_wall
    distinct_walls: tuple[WallSpec, ...] = (WallSpec(2.0, True), WallSpec(20.0, True))
    footprint_wall: WallSpec = WallSpec(2.0, True)
    flat_gigapixels: float = 2.0  # the largest canvas flattened for dzsave (3 bytes a pixel on disk)
    publish_timeout: float = 3600.0
    results_dir: Path | None = RESULTS_DIR

    def quick(self) -> PublishBenchSettings:
        return replace(self, distinct_walls=QUICK_DISTINCT_WALLS)


QUICK_DISTINCT_WALLS = (WallSpec(0.2, True), WallSpec(2.0, True))  # the same ratio in the quick run's time
PEAK_MEMORY_MB = 2000.0


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def publish_process(source: Path, dataset: str, env: dict[str, str], log: Path, timeout: float) -> dict:
    """``tiler publish`` as its own process: wall seconds, and its peak memory (the process tree's RSS sum
    sampled every 50 ms, each process's VmHWM, and the kernel's max RSS of the waited-for child)."""
    args = [str(VENV_BIN / "tiler"), "publish", str(source), "--bucket", BUCKET, "--dataset", dataset]
    started = time.monotonic()
    with log.open("wb") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        reaped = False
        with TreePeak(popen.pid) as peak:
            try:
                _, status, usage = os.wait4(popen.pid, 0)  # blocks; the sampler runs meanwhile
                reaped = True
            finally:
                if not reaped:  # interrupted (the suite's time bound): stop its process group by its PID
                    os.killpg(popen.pid, signal.SIGKILL)
                    popen.wait()
        popen.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    seconds = time.monotonic() - started
    if code != 0 or seconds > timeout:
        raise RuntimeError(f"tiler publish {dataset} failed (exit {code}, {seconds:.0f} s); see {log}")
    waited_mb = usage.ru_maxrss * 1024 / 1e6
    return {"seconds": seconds, "peak_mb": max(peak.peak_mb, waited_mb), "tree_rss_sum_mb": peak.sum_mb,
            "largest_hwm_mb": peak.hwm_mb, "child_max_rss_mb": waited_mb, "samples": peak.samples}


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def coarse_raster_bytes(geometry: Geometry, overview_level: int) -> int:
    """The size of the coarse raster ``tiler serve`` builds for a dataset at its default budget."""
    levels = plan_levels(geometry, overview_level, ServeSettings.coarse_raster_mb << 20)
    return raster_size(levels) if levels else 0


def measure_distinct(settings: PublishBenchSettings, children: Children, env: dict[str, str], spec: WallSpec,
                     scratch: Path) -> dict:
    """One wall of distinct covers: ``tiler publish`` (peak memory, covers/s), the node's bytes (the same build
    published locally), and ``vips dzsave`` of the same canvas (seconds and bytes), where it can be flattened."""
    root = spec.prepare(settings.work, children, settings.seed)
    source = spec.folder(settings.work, settings.seed) / "source"
    covers = sum(1 for _ in (source / "covers").iterdir())
    ds = LoadedDataset.open(DatasetDir(root, walls.DATASET))
    wall = walls.describe_wall(ds)
    with console.status(f"tiler publish of the {spec.name} wall ({covers:,} covers), peak memory sampled"):
        ours = publish_process(source, f"distinct-{str(spec).replace('.', '-')}", env,
                               children.log_dir / f"publish-{spec}.log", settings.publish_timeout)
    # the node's bytes: what boxlink replicates, and the coarse raster a serving worker derives from it
    raster = coarse_raster_bytes(ds.geometry, ds.overview_level)
    node_bytes = walls.dataset_bytes(DatasetDir(root, walls.DATASET)) + raster
    doc = {"wall": wall, "covers": covers, "publish": {**ours, "covers_per_s": covers / ours["seconds"]},
           "node_bytes": node_bytes, "coarse_raster_bytes": raster,
           "node_bytes_per_gpx": node_bytes / wall["gigapixels"]}
    console.log(f"{spec.name}: tiler publish {ours['seconds']:.1f} s ({covers / ours['seconds']:.0f} covers/s), "
                f"peak {ours['peak_mb']:.0f} MB; node {doc['node_bytes'] / 1e6:,.0f} MB")
    if spec.gigapixels <= settings.flat_gigapixels:
        flat = walls.flatten_wall(ds, spec.folder(settings.work, settings.seed))
        del ds
        with console.status(f"vips dzsave of the {spec.name} canvas"):
            dz = time_dzsave(children, flat, scratch / "dzsave")
        dz_bytes = tree_bytes(scratch / "dzsave")
        shutil.rmtree(scratch / "dzsave", ignore_errors=True)
        doc["dzsave"] = {**dz, "bytes": dz_bytes, "bytes_per_gpx": dz_bytes / wall["gigapixels"],
                         "covers_per_s": covers / dz["seconds"]}
        console.log(f"{spec.name}: vips dzsave {dz['seconds']:.1f} s, {dz_bytes / 1e6:,.0f} MB")
    return doc


def distinct_bars(doc: dict, footprint_wall: str) -> list[dict]:
    bars = []
    for name, d in doc.get("distinct", {}).items():
        p, dz = d["publish"], d.get("dzsave")
        bars.append(bar(f"{name} wall: tiler publish peak memory (process tree)", p["peak_mb"], "MB",
                        PEAK_MEMORY_MB, key="publish.peak-memory", group=name,
                        note=f"{d['covers']:,} covers in {p['seconds']:.0f} s"))
        bars.append(bar(f"{name} wall: tiler publish covers/s (build + upload)", p["covers_per_s"], "covers/s", None,
                        anchor=None if dz is None else "vips dzsave of the canvas",
                        anchor_figure=None if dz is None else dz["covers_per_s"], key="publish.covers-per-s",
                        group=name, note=None if dz else "no dzsave anchor: the canvas is too large to flatten here"))
        if name == footprint_wall and dz is not None:
            bars.append(bar(f"{name} wall: node bytes per gigapixel", d["node_bytes_per_gpx"] / 1e6, "MB/Gpx", 1.0,
                            anchor="vips dzsave JPEG q85 pyramid", anchor_figure=dz["bytes_per_gpx"] / 1e6,
                            key="publish.footprint",
                            note=f"node {d['node_bytes'] / 1e6:,.0f} MB, dzsave {dz['bytes'] / 1e6:,.0f} MB"))
    return bars


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
            doc["distinct"] = {}
            for spec in settings.distinct_walls:
                doc["distinct"][spec.name] = measure_distinct(settings, children, {**os.environ, **s3.env()}, spec,
                                                              Path(tmp))
    ours = {"bytes": result.bytes_uploaded, "upload_seconds": result.upload_seconds, "seconds": result.seconds,
            "upload_mb_per_s": result.bytes_uploaded / 1e6 / result.upload_seconds,
            "end_to_end_mb_per_s": result.bytes_uploaded / 1e6 / result.seconds}
    anchor = {"bytes": copied, "seconds": aws_seconds, "mb_per_s": copied / 1e6 / aws_seconds}
    doc.update(publish=ours, aws=anchor, load_average_end=load_average())
    doc["memory"] = [{"process": f"tiler publish, {name} wall", "when": "peak (process tree)",
                      "rss_mb": d["publish"]["peak_mb"], "pss_mb": None, "processes": 1}
                     for name, d in doc["distinct"].items()]
    doc["bars"] = [
        bar("tiler publish upload MB/s", ours["upload_mb_per_s"], "MB/s", 1.0, at_least=True,
            anchor="aws s3 cp --recursive", anchor_figure=anchor["mb_per_s"], key="publish.upload"),
        bar("tiler publish end to end (build + upload)", ours["end_to_end_mb_per_s"], "MB/s", None,
            key="publish.end-to-end"),
        *distinct_bars(doc, settings.footprint_wall.name),
    ]
    if settings.results_dir is not None:
        doc["results_file"] = str(write_results("publish", doc, settings.results_dir))
    return doc


def dzsave_cells(dz: dict | None) -> tuple[str, str, str]:
    if dz is None:
        return "—", "—", "—"
    return f"{dz['seconds']:.1f}", f"{dz['covers_per_s']:.0f}", f"{dz['bytes'] / 1e6:,.0f}"


def print_report(doc: dict) -> None:
    ours, aws = doc["publish"], doc["aws"]
    print(format_table(("", "MB", "seconds", "MB/s"), [
        ("tiler publish (upload)", f"{ours['bytes'] / 1e6:.0f}", f"{ours['upload_seconds']:.1f}",
         f"{ours['upload_mb_per_s']:.0f}"),
        ("tiler publish (end to end)", f"{ours['bytes'] / 1e6:.0f}", f"{ours['seconds']:.1f}",
         f"{ours['end_to_end_mb_per_s']:.0f}"),
        ("aws s3 cp --recursive", f"{aws['bytes'] / 1e6:.0f}", f"{aws['seconds']:.1f}", f"{aws['mb_per_s']:.0f}")]))
    rows = [(name, f"{d['covers']:,}", f"{d['publish']['seconds']:.1f}", f"{d['publish']['covers_per_s']:.0f}",
             f"{d['publish']['peak_mb']:.0f}", f"{d['node_bytes'] / 1e6:,.0f}",
             *dzsave_cells(d.get("dzsave")))
            for name, d in doc.get("distinct", {}).items()]
    if rows:
        print("\nwalls of distinct covers: tiler publish (whole process) beside vips dzsave of the same canvas")
        print(format_table(("wall", "covers", "publish s", "covers/s", "peak MB", "node MB", "dzsave s",
                            "dzsave covers/s", "dzsave MB"), rows))
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
