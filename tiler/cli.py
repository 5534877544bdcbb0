"""tiler: generate, publish, serve and render gigapixel walls.

Every flag also reads an environment variable of the same name (--bucket <- GIGATILE_BUCKET); S3's
endpoint, credentials and region come from AWS's own chain (AWS_ENDPOINT_URL_S3 for a local server).
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from gigaformat import commandline
from gigaformat.commandline import flag
from gigaformat.forwarding import LOOPBACK, parse_networks, public_base_url
from tiler.errors import TilerError

console = Console(stderr=True, soft_wrap=True)  # never fold messages: scripts grep them


def _add_generate(add) -> None:
    p = add("generate", help="make a synthetic Zoomii covers wall in the source format")
    flag(p, "out", Path, required=True, help="folder to write canvas.json, items.csv and covers/ into (new, "
         "empty, or a wall generated before, which is replaced)")
    flag(p, "gigapixels", float, 46.0, help="canvas size in gigapixels (46: Zoomii's acre of books)")
    flag(p, "unique", int, None, help="distinct cover images drawn (with replacement) for the items "
         "(default 256)")
    flag(p, "all-distinct", bool, help="every item gets a cover of its own (a real bookstore); --unique then "
         "sets only how many sizes the layout draws from")
    flag(p, "distinct-metadata", bool, help="every item gets a title and author of its own even where its cover "
         "is shared (a catalogue of distinct books, for search at scale)")
    flag(p, "seed", int, 1, help="the same seed and sizes give byte-identical walls")
    p.set_defaults(run=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from tiler.generate import DEFAULT_UNIQUE, generate_wall

    summary = generate_wall(args.out, args.gigapixels, args.unique or DEFAULT_UNIQUE, args.seed,
                            progress=sys.stderr.isatty(), all_distinct=args.all_distinct,
                            distinct_metadata=args.distinct_metadata)
    console.print(f"wall {args.out}: {summary.width} x {summary.height} px "
                  f"({summary.width * summary.height / 1e9:.1f} Gpx), {summary.items} items, "
                  f"{summary.unique} distinct covers, {summary.seconds:.1f} s")
    return 0


def _add_publish(add) -> None:
    p = add("publish", help="publish a source folder as a snapshot or diff of a dataset in S3")
    p.add_argument("source", type=Path, help="folder with canvas.json, items.csv and the images")
    flag(p, "dataset", default="covers", help="dataset name (1-63 of a-z 0-9 - _)")
    flag(p, "bucket", required=True, help="the S3 bucket (data/<dataset>/ inside it)")
    flag(p, "snapshot", bool, help="also write a full snapshot (compaction)")
    flag(p, "retention-hours", float, 24.0, help="keep superseded generations' objects this long")
    flag(p, "store", default="auto", choices=("auto", "pyramid", "chains"),
         help="layout: every level as stored tiles (pyramid: walls of distinct images), raw mip chains composed "
         "on demand (chains: few images shown many times), or whichever keeps fewer bytes (auto)")
    flag(p, "allow-shrink", bool, help="publish even an empty wall, or one keeping under half the published items")
    flag(p, "max-image-megapixels", float, 200.0, help="refuse an image file that decodes to more pixels")
    flag(p, "max-item-megapixels", float, 64.0, help="refuse an item whose rectangle has more pixels")
    flag(p, "max-canvas-gigapixels", float, 2000.0, help="refuse a larger canvas")
    p.add_argument("--items-per-tile", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(run=_run_publish)


def _run_publish(args: argparse.Namespace) -> int:
    from gigaformat.s3 import make_client
    from tiler.publish import publish
    from tiler.source import Limits
    from tiler.storage import ITEMS_PER_TILE_LIMIT

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
                         items_per_tile=args.items_per_tile or ITEMS_PER_TILE_LIMIT, progress=report, store=args.store,
                         allow_shrink=args.allow_shrink,
                         limits=Limits(image_pixels=int(args.max_image_megapixels * 1e6),
                                       item_pixels=int(args.max_item_megapixels * 1e6),
                                       canvas_pixels=int(args.max_canvas_gigapixels * 1e9)),
                         on_bytes=lambda n: bar.advance(upload, n))
    if not result.kinds:
        console.print(f"{args.dataset}: nothing changed, still generation {result.generation}")
        return 0
    mb = result.bytes_uploaded / 1e6
    console.print(f"{args.dataset}: generation {result.generation} published ({' + '.join(result.kinds)}), "
                  f"{result.changed_items} items changed, {result.objects} objects, {mb:.1f} MB uploaded "
                  f"in {result.seconds:.1f} s ({mb / max(result.seconds, 1e-9):.0f} MB/s, "
                  f"{result.items_per_second:.0f} items/s overall)")
    return 0


def _add_serve(add) -> None:
    p = add("serve", help="the render server: tiles, DeepZoom, IIIF, health and metrics")
    flag(p, "root", Path, required=True, help="node root; datasets are read from <root>/data/<dataset>/")
    flag(p, "datasets", default="covers", help="comma-separated datasets to serve (and ask boxlink for, "
         "with synch.active)")
    flag(p, "host", default="127.0.0.1", help="address to listen on")
    flag(p, "port", int, 8080, help="port to listen on")
    flag(p, "workers", int, 2, help="server processes (each maps the packs; the pages are shared)")
    flag(p, "render-threads", int, 2, help="renders at once per worker")
    flag(p, "max-queue", int, 64, help="renders waiting per worker beyond which requests get 503")
    flag(p, "jpeg-quality", int, 85, help="JPEG and WebP quality, 1-100")
    flag(p, "cache-mb", int, 64, help="encoded-tile cache per worker, MB")
    flag(p, "reload-seconds", float, 1.0, help="how often to look for a newer verified generation")
    flag(p, "bucket", default="", help="register in s3://BUCKET/proxy/ once ready (none: do not register)")
    flag(p, "advertise", default="", help="address written in the registration (default: --host)")
    flag(p, "instance-id", default="", help="instance id written in the registration")
    flag(p, "ttl-seconds", int, 30, help="registration lifetime; renewed every third of it")
    flag(p, "iiif-threads", int, 1, help="IIIF renders at once per worker (a pool of their own, beneath tiles)")
    flag(p, "iiif-max-queue", int, 16, help="IIIF requests waiting per worker beyond which requests get 503")
    flag(p, "iiif-cache-mb", int, 32, help="encoded IIIF answers (each at most 256 KB) cached per worker, MB")
    flag(p, "coarse-raster-mb", int, 512, help="decoded coarse levels kept on the node's disk per dataset, so that "
         "IIIF regions there are copies, not tile decodes, MB (0: none)")
    flag(p, "public-url", default="", help="base URL the world reaches this service at, for the ids of IIIF "
         "documents, e.g. https://tiles.example.com (default: from the request and trusted proxies' headers)")
    flag(p, "trusted-proxies", default=LOOPBACK, help="comma-separated addresses/networks whose Forwarded and "
         "X-Forwarded-* headers are believed")
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from tiler.serve import serve
    from tiler.settings import ServeSettings

    if not 1 <= args.jpeg_quality <= 100:
        raise TilerError("--jpeg-quality must be 1-100")
    try:
        parse_networks(args.trusted_proxies)
    except ValueError as exc:
        raise TilerError(f"--trusted-proxies: {exc}") from None
    try:
        public_url = public_base_url(args.public_url)
    except ValueError as exc:
        raise TilerError(f"--public-url {exc}") from None
    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    settings = ServeSettings(root=args.root.resolve(), datasets=datasets, host=args.host, port=args.port,
                             workers=max(1, args.workers), render_threads=max(1, args.render_threads),
                             max_queue=max(1, args.max_queue), jpeg_quality=args.jpeg_quality,
                             cache_mb=max(0, args.cache_mb), reload_seconds=args.reload_seconds,
                             bucket=args.bucket, advertise=args.advertise, instance_id=args.instance_id,
                             ttl_seconds=args.ttl_seconds, iiif_threads=max(1, args.iiif_threads),
                             iiif_max_queue=max(1, args.iiif_max_queue), iiif_cache_mb=max(0, args.iiif_cache_mb),
                             coarse_raster_mb=max(0, args.coarse_raster_mb), public_url=public_url,
                             trusted_proxies=args.trusted_proxies)
    _say_where(settings)
    serve(settings)
    return 0


def _say_where(settings) -> None:
    """The server's address and, for a root with no data, what to do about it (a node's log keeps both)."""
    from tiler.waiting import no_data_reason, without_data

    base = f"http://{settings.host}:{settings.port}"
    console.print(f"tiler serve: listening on {base}/ (tiles /tiles/<dataset>/, viewer /viewer/, readiness "
                  f"/readyz); workers={settings.workers} datasets={','.join(settings.datasets)} root={settings.root}")
    for name in without_data(settings.root, settings.datasets):
        console.print(f"tiler serve: dataset {name!r}: {no_data_reason(settings.root, name)}; until then its tiles and "
                      "/readyz answer 503")


def _add_render(add) -> None:
    p = add("render", help="export a pyramid, level range or region to a DeepZoom folder")
    flag(p, "root", Path, required=True, help="node root holding <root>/data/<dataset>/")
    flag(p, "dataset", default="covers", help="the dataset to export")
    p.add_argument("--out", type=Path, required=True, help="folder for <name>.dzi and <name>_files/")
    p.add_argument("--name", default=None, help="DeepZoom name (default: the dataset)")
    p.add_argument("--format", default="jpg", choices=["jpg", "png", "webp"], help="tile format")
    p.add_argument("--quality", type=int, default=85, help="JPEG and WebP quality, 1-100")
    p.add_argument("--levels", default=None, help="DeepZoom levels a-b (default: all)")
    p.add_argument("--region", default=None, help="canvas region x,y,w,h (default: all)")
    p.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    p.set_defaults(run=_run_render)


def _run_render(args: argparse.Namespace) -> int:
    from gigaformat import deepzoom
    from gigaformat.layout import DatasetDir
    from tiler.export import ExportPlan, export_deepzoom

    folder = DatasetDir(args.root, args.dataset)
    state = folder.load_current_state()
    top = deepzoom.max_level(state.canvas.width, state.canvas.height)
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
        except ValueError:
            region = ()
        if len(region) != 4 or region[2] <= 0 or region[3] <= 0:
            raise TilerError(f"--region {args.region!r}: use x,y,w,h with w, h > 0")
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


def build_parser() -> argparse.ArgumentParser:
    parser = commandline.parser("tiler", __doc__, log_level="WARNING")  # its console output says what happened
    add = commandline.subcommands(parser)
    for verb in (_add_generate, _add_publish, _add_serve, _add_render):
        verb(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    return commandline.main("tiler", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
