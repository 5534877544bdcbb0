"""node-bootstrap: bring a render node up from its user-data, report its state, publish releases.

    node-bootstrap run [--root R]          what rc.local / cloud-init runs (IMDSv2 -> update -> supervise)
    node-bootstrap update [--root R]       the same up to the installed release, then exit
    node-bootstrap status --root R [--json]
    node-bootstrap release --bucket B [--channel C] [--rollback]
    node-bootstrap imds --host H --port P --user-data F --instance-id I   (the IMDSv2 emulator)

The IMDS endpoint is AWS_EC2_METADATA_SERVICE_ENDPOINT (as in botocore), else 169.254.169.254. S3
credentials and endpoint come from AWS's own chain (the instance role on EC2).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from bootstrap.errors import BootstrapError
from gigaformat import commandline
from gigaformat.commandline import flag


def _default_source() -> Path | None:
    """The project folder this bootstrap runs from, when it runs from a checkout."""
    candidate = Path(__file__).resolve().parent.parent
    return candidate if (candidate / "pyproject.toml").is_file() else None


def build_parser() -> argparse.ArgumentParser:
    parser = commandline.parser("node-bootstrap", __doc__)
    add = commandline.subcommands(parser)
    for name, text in (("run", "bring the node up and supervise boxlink and the render server"),
                       ("update", "bring the node up to the installed release, then exit")):
        p = add(name, help=text)
        p.add_argument("--root", type=Path, default=None, help="node root (default: the user-data's root)")
        p.add_argument("--grace", type=float, default=15.0, help="seconds between SIGTERM and SIGKILL of a child")
        p.set_defaults(run=_run, supervise=name == "run")
    status = add("status", help="the node's phases and each child's pid, state, restarts, uptime")
    status.add_argument("--root", type=Path, required=True, help="the node root")
    status.add_argument("--json", action="store_true", help="the status document itself")
    status.set_defaults(run=_status)
    release = add("release", help="publish this project's wheel and the fresh bootstrap to S3")
    flag(release, "bucket", required=True, help="the bucket nodes install releases from")
    release.add_argument("--channel", default="current", help="releases/<channel>.json")
    release.add_argument("--source", type=Path, default=_default_source(), help="the project folder")
    release.add_argument("--wheel", type=Path, default=None, help="release this wheel instead of building one")
    release.add_argument("--no-kernels", action="store_true",
                         help="do not ship kernels compiled on this machine (nodes then compile their own)")
    release.add_argument("--rollback", action="store_true", help="point the channel back at the release before")
    release.set_defaults(run=_release)
    add("imds", help="run an IMDSv2 emulator for one local node (node-bootstrap imds --help)")
    return parser


def _stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT set the event: the supervisor forwards SIGTERM to its children and waits."""
    stop = threading.Event()

    def handle(signum, frame) -> None:
        logging.getLogger("bootstrap").warning("signal=%s stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def _run(args: argparse.Namespace) -> int:
    from bootstrap.node.imds import endpoint_from_environment
    from bootstrap.node.lifecycle import NodeOptions, run_node

    stop = _stop_on_signals()
    options = NodeOptions(imds_endpoint=endpoint_from_environment(os.environ), argv=sys.argv[1:],
                          environ=dict(os.environ), root=args.root, supervise=args.supervise, grace=args.grace)
    return run_node(options, stop)


def _status(args: argparse.Namespace) -> int:
    from bootstrap.node.status import read_status, render_status
    from gigaformat.layout import NodeLayout

    doc = read_status(NodeLayout(args.root.resolve()).status_path)
    if doc is None:
        raise BootstrapError(f"no node status under {args.root} (run/status.json): has node-bootstrap run there?")
    print(json.dumps(doc, indent=1) if args.json else render_status(doc))
    return 0


def _release(args: argparse.Namespace) -> int:
    from bootstrap.release.publisher import build_and_publish, rollback
    from bootstrap.s3io import make_client

    client = make_client()
    if args.rollback:
        done = rollback(client, args.bucket, args.channel)
        print(f"channel {args.channel} rolled back to {done.pointer.version} (s3://{args.bucket}/{done.pointer.key})")
        return 0
    if args.source is None:
        raise BootstrapError("--source: the project folder to release (with pyproject.toml) is needed")
    done = build_and_publish(client, args.bucket, args.source.resolve(), args.channel, wheel=args.wheel,
                             with_kernels=not args.no_kernels)
    print(f"released {done.pointer.version} on channel {args.channel}: s3://{args.bucket}/{done.pointer.key} "
          f"({done.pointer.size} bytes, sha256 {done.pointer.sha256[:16]}…), bootstrap {done.bootstrap.digest[:16]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["imds"]:  # the emulator has its own flags
        from bootstrap.launch.imds_emulator import main as imds_main

        return imds_main(argv[1:], prog="node-bootstrap imds")
    return commandline.main("node-bootstrap", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
