"""tile-proxy: the caching load balancer in front of the render nodes.

Every flag also reads an environment variable of the same name (--cache-size <- GIGATILE_CACHE_SIZE); S3's
endpoint and credentials come from AWS's own chain (AWS_ENDPOINT_URL_S3 for a local server).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from gigaformat import commandline
from gigaformat.commandline import flag
from proxy.errors import ProxyError
from proxy.settings import DEFAULT_ALLOW_NET, VIEWER_DIR, ProxySettings, parse_networks, parse_size


def _number(kind, flag: str, text: str, low: float):
    try:
        value = kind(text)
    except ValueError:
        raise ProxyError(f"--{flag} {text!r} is not a number") from None
    if value < low:
        raise ProxyError(f"--{flag} must be at least {low}")
    return value


def _sweep_ttls(text: str) -> float:
    value = _number(float, "sweep-ttls", text, 0)
    if 0 < value < 2:  # heartbeats have whole seconds and renew every ttl/3: below 2 TTLs live nodes go
        raise ProxyError("--sweep-ttls must be 0 (never sweep) or at least 2")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = commandline.parser("tile-proxy", __doc__)
    add = commandline.subcommands(parser)
    p = add("run", help="serve the claimed routes of the registered render nodes, with a disk cache")
    flag(p, "bucket", required=True, help="the bucket whose proxy/ records name the render nodes")
    flag(p, "host", default="127.0.0.1", help="address to listen on")
    flag(p, "port", default="8000", help="port to listen on")
    flag(p, "allow-net", default=DEFAULT_ALLOW_NET, help="comma-separated CIDRs a backend address must be in")
    flag(p, "poll-seconds", default="2", help="how often s3://BUCKET/proxy/ is listed")
    flag(p, "health-seconds", default="2", help="how often each backend's /readyz is checked")
    flag(p, "cache-dir", Path, required=True, help="folder of the disk cache (created if missing)")
    flag(p, "cache-size", default="2G", help="disk cache bound, e.g. 2G")
    flag(p, "memory-cache-size", default="64M", help="in-memory LRU of hot tiles, e.g. 64M (0 turns it off)")
    flag(p, "connect-timeout", default="1", help="seconds to connect to a backend")
    flag(p, "read-timeout", default="15", help="seconds to wait for a backend's answer")
    flag(p, "max-attempts", default="3", help="backends tried for one request before 502")
    flag(p, "access-log", default="-", help="'-' (stderr), a file path, or 'off'")
    flag(p, "viewer-dir", Path, VIEWER_DIR, help="the viewer's static files, served at /")
    flag(p, "sweep-ttls", default="10", help="delete a record nobody renewed for this many of its TTLs (0: never)")
    flag(p, "sd-file", default="", help="write Prometheus file_sd targets of the registered nodes here ('' : off)")
    flag(p, "fleet-seconds", default="5", help="sampling interval of the fleet page's plots (/fleet.html)")
    p.set_defaults(run=_run)
    return parser


def settings_from(args: argparse.Namespace) -> ProxySettings:
    """The one settings object, from parsed flags (which already hold their environment twins)."""
    return ProxySettings(
        bucket=args.bucket, cache_dir=args.cache_dir.resolve(), host=args.host,
        port=_number(int, "port", args.port, 0), allow_nets=parse_networks(args.allow_net),
        poll_seconds=_number(float, "poll-seconds", args.poll_seconds, 0.1),
        health_seconds=_number(float, "health-seconds", args.health_seconds, 0.1),
        cache_bytes=parse_size(args.cache_size), memory_bytes=parse_size(args.memory_cache_size),
        connect_timeout=_number(float, "connect-timeout", args.connect_timeout, 0.01),
        read_timeout=_number(float, "read-timeout", args.read_timeout, 0.01),
        max_attempts=_number(int, "max-attempts", args.max_attempts, 1), viewer_dir=args.viewer_dir,
        sweep_ttls=_sweep_ttls(args.sweep_ttls),
        sd_file=Path(args.sd_file).resolve() if args.sd_file else None,
        fleet_seconds=_number(float, "fleet-seconds", args.fleet_seconds, 0.1),
    )


def _check_cache_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProxyError(f"cannot create --cache-dir {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ProxyError(f"--cache-dir {path} is not writable")


def _configure_access_log(where: str) -> None:
    access = logging.getLogger("proxy.access")
    access.propagate = False
    if where == "off":
        access.setLevel(logging.WARNING)
        return
    handler = logging.StreamHandler(sys.stderr) if where == "-" else logging.FileHandler(where)
    handler.setFormatter(logging.Formatter("%(message)s"))  # each line has its own time=
    access.addHandler(handler)
    access.setLevel(logging.INFO)


def _http_protocol(app):
    """uvicorn's httptools protocol with memory hits answered in place (proxy/fastpath.py), else its default."""
    try:
        import httptools  # noqa: F401 - the fast path is built on uvicorn's httptools protocol
    except ImportError:
        return "auto"
    from proxy.fastpath import fast_protocol

    return fast_protocol(app)


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from proxy.app import ProxyApp

    settings = settings_from(args)
    _check_cache_dir(settings.cache_dir)
    _configure_access_log(args.access_log)
    app = ProxyApp(settings)
    # The app writes its own access log; no X-Forwarded-* rewriting: the proxy is the edge.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, lifespan="on", access_log=False,
                            http=_http_protocol(app),
                            proxy_headers=False, log_level="warning", server_header=False,
                            timeout_graceful_shutdown=5, backlog=4096)
    server = uvicorn.Server(config)
    base = f"http://{settings.host}:{settings.port}"
    logging.getLogger("proxy").info("listening url=%s/ viewer=%s status=%s/proxy/status bucket=%s", base,
                                    f"{base}/" if settings.viewer_dir.is_dir() else "none", base, settings.bucket)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler it found:
    # make that a plain exit (0 once it had started), not a death by signal or a KeyboardInterrupt traceback.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0 if server.started else 1))
    server.run()
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    return commandline.main("tile-proxy", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
