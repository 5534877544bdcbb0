"""boxlink: replicate published datasets from S3 onto this node, and ship the node's logs up.

Every flag also reads an environment variable of the same name (--bucket <- GIGATILE_BUCKET, --root <-
GIGATILE_ROOT, --chunk-mb <- GIGATILE_CHUNK_MB). S3's endpoint and credentials come from AWS's own chain
(AWS_ENDPOINT_URL_S3 for a local server).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import logging.handlers
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from boxlink.errors import BoxlinkError, Cancelled
from boxlink.settings import MB, Settings, TransferPolicy
from gigaformat import commandline
from gigaformat.commandline import LOG_FORMAT, flag
from gigaformat.layout import NodeLayout

LOG_MAX_BYTES = 10 * MB
LOG_BACKUPS = 5


def _common(p: argparse.ArgumentParser, with_transfer: bool) -> None:
    flag(p, "root", Path, required=True, help="node root: datasets under ROOT/data/<dataset>/, logs in ROOT/data/log/")
    if with_transfer:
        flag(p, "bucket", required=True, help="the S3 bucket the datasets are published in")
        flag(p, "concurrency", int, 8, help="ranged GETs in flight")
        flag(p, "chunk-mb", int, TransferPolicy.chunk_bytes // MB, help="bytes per ranged GET, in MiB")
        flag(p, "attempts", int, 4, help="tries per object before a pass fails")
        flag(p, "direct-writes", bool, help="write whole blocks past the page cache (O_DIRECT): nothing fetched "
             "stays cached, and less system time per byte where filling the page cache is dear")
        flag(p, "lazy-mb", int, 64, help="when a pass fetches this many MB of packs or more, the render server "
             "serves the new generation at once, fetching missing tiles from S3 (synch.lazy)")
        flag(p, "progress", bool, help="show a progress bar")
        flag(p, "instance-id", default=socket.gethostname(), help="logs go to s3://BUCKET/logs/<instance-id>/")
        flag(p, "debug-pause", default="", help=argparse.SUPPRESS)  # "before-switch=30,before-down=5"


def build_parser() -> argparse.ArgumentParser:
    parser = commandline.parser("boxlink", __doc__)
    add = commandline.subcommands(parser)
    run = add("run", help="replicate every dataset the render server marked synch.active, poll, ship logs")
    _common(run, True)
    flag(run, "interval", float, 5.0, help="seconds between manifest polls")
    flag(run, "log-interval", float, 60.0, help="upload the open log file at most this often, seconds")
    flag(run, "retry-max", float, 60.0, help="longest wait between failed passes, seconds")
    run.set_defaults(func=_run)
    sync = add("sync", help="one pass over one dataset, then exit")
    _common(sync, True)
    flag(sync, "dataset", required=True, help="the dataset to bring up to date")
    sync.set_defaults(func=_sync, interval=5.0, log_interval=60.0, retry_max=60.0)
    status = add("status", help="per dataset: local/remote generation, lag")
    _common(status, False)
    status.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    status.set_defaults(func=_status)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    if args.concurrency < 1 or args.chunk_mb < 1 or args.attempts < 1:
        raise BoxlinkError("--concurrency, --chunk-mb and --attempts must be at least 1")
    if args.interval <= 0:
        raise BoxlinkError("--interval must be positive")
    return Settings(root=args.root, bucket=args.bucket, instance_id=args.instance_id, interval=args.interval,
                    transfer=TransferPolicy(concurrency=args.concurrency, chunk_bytes=args.chunk_mb * MB,
                                            attempts=args.attempts, direct_writes=args.direct_writes),
                    log_interval=args.log_interval, retry_max_seconds=args.retry_max, progress=args.progress,
                    lazy_bytes=args.lazy_mb * MB,
                    debug_pauses=_parse_pauses(args.debug_pause))


def _parse_pauses(text: str) -> dict[str, float]:
    pauses = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        point, _, seconds = part.partition("=")
        try:
            pauses[point] = float(seconds)
        except ValueError:
            raise BoxlinkError(f"GIGATILE_DEBUG_PAUSE: {part!r} is not POINT=SECONDS") from None
    return pauses


def setup_logging(root: Path, level: str, to_file: bool) -> None:
    """key=value log lines to ROOT/data/log/boxlink.log (rotating) and to stderr (only warnings and errors
    when the file is written and stderr is not a terminal)."""
    handlers: list[logging.Handler] = []
    if to_file:
        folder = NodeLayout(root).log_dir
        folder.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(folder / "boxlink.log", maxBytes=LOG_MAX_BYTES,
                                                             backupCount=LOG_BACKUPS))
        handlers[-1].setFormatter(logging.Formatter(LOG_FORMAT))
    if sys.stderr.isatty():
        from rich.logging import RichHandler  # plays well with the progress bar

        handlers.append(RichHandler(console=_console(), show_path=False))
        handlers[-1].setFormatter(logging.Formatter("%(name)s %(message)s"))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
        handlers[-1].setFormatter(logging.Formatter(LOG_FORMAT))
        if to_file:  # under a supervisor stderr becomes boxlink.console.log: do not write every line twice
            handlers[-1].setLevel(logging.WARNING)
    commandline.setup_logging(level, handlers)


@functools.cache
def _console():
    """The stderr console of the progress bar and of a person's log lines (rich is imported only for them:
    a ``boxlink sync`` under a supervisor starts without it)."""
    from rich.console import Console

    return Console(stderr=True)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _stop_on_signals() -> threading.Event:
    """SIGTERM/SIGINT set the event (work stops cleanly); a second one exits at once (also safe)."""
    stop = threading.Event()

    def handle(signum, frame) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        logging.getLogger("boxlink").warning("signal=%s stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def _node(args: argparse.Namespace, stop: threading.Event):
    from boxlink.progress import Meter, progress_bar
    from boxlink.remote import connect
    from boxlink.runner import Node

    settings = settings_from(args)
    client, counter = connect(settings.transfer.concurrency)
    bar = progress_bar(_console()) if settings.progress else None
    return Node(settings, client, counter, stop, meter=lambda name: Meter(name, bar)), bar


def _run(args: argparse.Namespace) -> int:
    stop = _stop_on_signals()
    node, bar = _node(args, stop)
    if bar is not None:
        with bar:
            node.run()
    else:
        node.run()
    return 0


def _sync(args: argparse.Namespace) -> int:
    stop = _stop_on_signals()
    node, bar = _node(args, stop)
    try:
        if bar is not None:
            with bar:
                result = node.sync_dataset(args.dataset)
        else:
            result = node.sync_dataset(args.dataset)
    except Cancelled:
        _say(f"{args.dataset}: stopped; verified objects are kept for the next run")
        return 0
    fetch = result.fetch
    moved = f"{fetch.bytes / 1e6:.1f} MB in {fetch.seconds:.1f} s ({fetch.mb_per_second:.0f} MB/s)" if fetch else \
        "nothing fetched"
    _say(f"{args.dataset}: generation {result.generation} ({result.route}; {moved})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from boxlink.status import dataset_status

    rows = [dataset_status(folder) for folder in NodeLayout(args.root).datasets()]
    if args.json:
        print(json.dumps({"root": str(args.root), "datasets": [r.to_json() for r in rows]}, indent=1))
        return 0
    if not rows:
        print(f"no datasets under {args.root}/data")
        return 0
    print(f"{'dataset':<16} {'active':<6} {'local':>6} {'remote':>6} {'lag':>4}  {'checked':<20} last error")
    for r in rows:
        print(f"{r.dataset:<16} {'yes' if r.active else 'no':<6} {_dash(r.local_generation):>6} "
              f"{_dash(r.remote_generation):>6} {_dash(r.lag):>4}  {r.last_check or '-':<20} {r.last_error or '-'}")
    return 0


def _dash(value) -> str:
    return "-" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        setup_logging(args.root, args.log_level, to_file=args.command != "status")
        try:
            return args.func(args)
        except BoxlinkError as exc:
            logging.getLogger("boxlink").error("failed command=%s error=%r", args.command, str(exc))
            raise

    return commandline.run_command("boxlink", work)


def entry() -> None:
    """The ``boxlink`` program: ``main``, then the process ends at once (``os._exit``) once the logs and stdio
    are flushed. Every file boxlink writes is closed (and fsynced where it must be) before ``main`` returns and
    every worker thread has been joined, so what the interpreter's own teardown would add is only time
    (measured 2026-12-02: 50-65 ms of a 0.8-s ``boxlink sync``, freeing botocore's objects one by one)."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
