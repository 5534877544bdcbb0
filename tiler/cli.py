"""``tiler``: generate, publish, serve and render gigapixel walls.

Every flag also reads an environment variable of the same name (``--bucket`` <- ``GIGATILE_BUCKET``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from tiler.errors import TilerError
from tiler.settings import LOG_FORMAT

console = Console(stderr=True, soft_wrap=True)  # never fold messages: scripts grep them


def env_default(name: str, default: str | None = None) -> str | None:
    return os.environ.get("GIGATILE_" + name.upper().replace("-", "_"), default)


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="make a synthetic Zoomii covers wall in the source format")
    p.add_argument("--out", type=Path, default=env_default("out"), required=env_default("out") is None)
    p.add_argument("--gigapixels", type=float, default=float(env_default("gigapixels", "46")))
    p.add_argument("--unique", type=int, default=None, help="distinct cover images (default 256)")
    p.add_argument("--seed", type=int, default=int(env_default("seed", "1")))
    p.set_defaults(run=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from tiler.generate import DEFAULT_UNIQUE, generate_wall

    summary = generate_wall(args.out, args.gigapixels, args.unique or DEFAULT_UNIQUE, args.seed,
                            progress=sys.stderr.isatty())
    console.print(f"wall {args.out}: {summary.width} x {summary.height} px "
                  f"({summary.width * summary.height / 1e9:.1f} Gpx), {summary.items} items, "
                  f"{summary.unique} distinct covers, {summary.seconds:.1f} s")
    return 0


def _add_publish(sub) -> None:
    p = sub.add_parser("publish", help="publish a source folder as a snapshot or diff of a dataset in S3")
    p.add_argument("source", type=Path, help="folder with canvas.json, items.csv and the images")
    p.add_argument("--dataset", default=env_default("dataset", "covers"))
    p.add_argument("--bucket", default=env_default("bucket"), required=env_default("bucket") is None)
    p.add_argument("--snapshot", action="store_true", help="write a full snapshot (compaction)")
    p.add_argument("--retention-hours", type=float, default=float(env_default("retention_hours", "24")),
                   help="keep superseded generations' objects this long")
    p.add_argument("--items-per-tile", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(run=_run_publish)


def _run_publish(args: argparse.Namespace) -> int:
    from tiler.overview import ITEMS_PER_TILE_LIMIT
    from tiler.publish import publish
    from tiler.s3io import make_client

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        tasks: dict[str, TaskID] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        upload = bar.add_task("upload (bytes)", total=None)
        result = publish(args.source, args.dataset, args.bucket, make_client(), snapshot=args.snapshot,
                         retention=timedelta(hours=args.retention_hours),
                         items_per_tile=args.items_per_tile or ITEMS_PER_TILE_LIMIT, progress=report,
                         on_bytes=lambda n: bar.advance(upload, n))
    if not result.kinds:
        console.print(f"{args.dataset}: nothing changed, still generation {result.generation}")
        return 0
    mb = result.bytes_uploaded / 1e6
    console.print(f"{args.dataset}: generation {result.generation} published ({' + '.join(result.kinds)}), "
                  f"{result.changed_items} items changed, {result.objects} objects, {mb:.1f} MB uploaded "
                  f"in {result.seconds:.1f} s ({mb / max(result.seconds, 1e-9):.0f} MB/s overall)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tiler", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=env_default("log_level", "WARNING"))
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    _add_publish(sub)
    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="the render server: tiles, DeepZoom, IIIF, health and metrics")
    p.add_argument("--root", type=Path, default=env_default("root"), required=env_default("root") is None,
                   help="node root; datasets are read from <root>/data/<dataset>/")
    p.add_argument("--datasets", default=env_default("datasets", "covers"),
                   help="comma-separated datasets to request from boxlink (synch.active)")
    p.add_argument("--host", default=env_default("host", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env_default("port", "8080")))
    p.add_argument("--workers", type=int, default=int(env_default("workers", "2")))
    p.add_argument("--render-threads", type=int, default=int(env_default("render_threads", "2")))
    p.add_argument("--max-queue", type=int, default=int(env_default("max_queue", "64")))
    p.add_argument("--jpeg-quality", type=int, default=int(env_default("jpeg_quality", "85")))
    p.add_argument("--cache-mb", type=int, default=int(env_default("cache_mb", "64")))
    p.add_argument("--reload-seconds", type=float, default=float(env_default("reload_seconds", "1")))
    p.add_argument("--bucket", default=env_default("bucket", ""), help="register in s3://BUCKET/proxy/ when set")
    p.add_argument("--advertise", default=env_default("advertise", ""), help="address in the registration")
    p.add_argument("--instance-id", default=env_default("instance_id", ""))
    p.add_argument("--ttl-seconds", type=int, default=int(env_default("ttl_seconds", "30")))
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from tiler.serve import serve
    from tiler.settings import ServeSettings

    if not 1 <= args.jpeg_quality <= 100:
        raise TilerError("--jpeg-quality must be 1-100")
    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    settings = ServeSettings(root=args.root.resolve(), datasets=datasets, host=args.host, port=args.port,
                             workers=max(1, args.workers), render_threads=max(1, args.render_threads),
                             max_queue=max(1, args.max_queue), jpeg_quality=args.jpeg_quality,
                             cache_mb=max(0, args.cache_mb), reload_seconds=args.reload_seconds,
                             bucket=args.bucket, advertise=args.advertise, instance_id=args.instance_id,
                             ttl_seconds=args.ttl_seconds)
    serve(settings)
    return 0


def _add_render(sub) -> None:
    p = sub.add_parser("render", help="export a pyramid, level range or region to a DeepZoom folder")
    p.add_argument("--root", type=Path, default=env_default("root"), required=env_default("root") is None)
    p.add_argument("--dataset", default=env_default("dataset", "covers"))
    p.add_argument("--out", type=Path, required=True, help="folder for <name>.dzi and <name>_files/")
    p.add_argument("--name", default=None, help="DeepZoom name (default: the dataset)")
    p.add_argument("--format", default="jpg", choices=["jpg", "png", "webp"])
    p.add_argument("--quality", type=int, default=85)
    p.add_argument("--levels", default=None, help="DeepZoom levels a-b (default: all)")
    p.add_argument("--region", default=None, help="canvas region x,y,w,h (default: all)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    p.set_defaults(run=_run_render)


def _run_render(args: argparse.Namespace) -> int:
    from tiler.export import ExportPlan, dz_max_level, export_deepzoom
    from tiler.localstore import DatasetDir

    folder = DatasetDir(args.root, args.dataset)
    state = folder.load_current_state()
    top = dz_max_level(state.canvas.width, state.canvas.height)
    levels = (0, top)
    if args.levels:
        try:
            low, high = (int(v) for v in args.levels.split("-"))
        except ValueError:
            raise TilerError(f"--levels {args.levels!r}: use a-b, e.g. 8-{top}") from None
        levels = (low, high)
    region = None
    if args.region:
        try:
            region = tuple(int(v) for v in args.region.split(","))
            assert len(region) == 4 and region[2] > 0 and region[3] > 0
        except (ValueError, AssertionError):
            raise TilerError(f"--region {args.region!r}: use x,y,w,h with w, h > 0") from None
    plan = ExportPlan(args.out, args.name or args.dataset, args.format, args.quality, levels, region)
    columns = (TextColumn("render"), BarColumn(), TextColumn("{task.completed}/{task.total} tiles"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("render", total=None)
        count, seconds = export_deepzoom(folder, plan, args.workers,
                                         lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"{count} tiles in {seconds:.1f} s ({count / max(seconds, 1e-9):.0f} tiles/s) -> "
                  f"{args.out / (plan.name + '.dzi')}")
    return 0


_EXTRA_COMMANDS: list = [_add_serve, _add_render]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    try:
        return args.run(args)
    except TilerError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
