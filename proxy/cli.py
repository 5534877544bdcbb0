"""``tile-proxy``: the caching load balancer in front of the render nodes.

Every flag also reads an environment variable of the same name (``--cache-size`` <- ``GIGATILE_CACHE_SIZE``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from proxy.errors import ProxyError
from proxy.settings import DEFAULT_ALLOW_NET, VIEWER_DIR, ProxySettings, parse_networks, parse_size


def env_default(name: str, default: str | None = None) -> str | None:
    return os.environ.get("GIGATILE_" + name.upper().replace("-", "_"), default)


def _number(kind, flag: str, text: str, low: float):
    try:
        value = kind(text)
    except ValueError:
        raise ProxyError(f"--{flag} {text!r} is not a number") from None
    if value < low:
        raise ProxyError(f"--{flag} must be at least {low}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tile-proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=env_default("log_level", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="serve the claimed routes of the registered render nodes, with a disk cache")
    p.add_argument("--bucket", default=env_default("bucket"), required=env_default("bucket") is None,
                   help="the bucket whose proxy/ records name the render nodes")
    p.add_argument("--host", default=env_default("host", "127.0.0.1"))
    p.add_argument("--port", default=env_default("port", "8000"))
    p.add_argument("--allow-net", default=env_default("allow_net", DEFAULT_ALLOW_NET),
                   help="comma-separated CIDRs a backend address must be in (default: loopback and private)")
    p.add_argument("--poll-seconds", default=env_default("poll_seconds", "2"), help="registry LIST interval")
    p.add_argument("--health-seconds", default=env_default("health_seconds", "2"), help="/readyz check interval")
    p.add_argument("--cache-dir", type=Path, default=env_default("cache_dir"), required=env_default("cache_dir")
                   is None)
    p.add_argument("--cache-size", default=env_default("cache_size", "2G"), help="disk cache bound, e.g. 2G")
    p.add_argument("--memory-cache-size", default=env_default("memory_cache_size", "64M"),
                   help="in-memory LRU of hot tiles, e.g. 64M (0 turns it off)")
    p.add_argument("--connect-timeout", default=env_default("connect_timeout", "1"))
    p.add_argument("--read-timeout", default=env_default("read_timeout", "15"))
    p.add_argument("--max-attempts", default=env_default("max_attempts", "3"),
                   help="backends tried for one request before 502")
    p.add_argument("--access-log", default=env_default("access_log", "-"),
                   help="'-' (stderr, the default), a file path, or 'off'")
    p.add_argument("--viewer-dir", type=Path, default=Path(env_default("viewer_dir", str(VIEWER_DIR))))
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


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from proxy.app import ProxyApp

    settings = settings_from(args)
    _check_cache_dir(settings.cache_dir)
    _configure_access_log(args.access_log)
    app = ProxyApp(settings)
    # The app writes its own access log; no X-Forwarded-* rewriting: the proxy is the edge.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, lifespan="on", access_log=False,
                            proxy_headers=False, log_level="warning", server_header=False,
                            timeout_graceful_shutdown=5, backlog=4096)
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler it found:
    # make that a plain exit (0 once it had started), not a death by signal or a KeyboardInterrupt traceback.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0 if server.started else 1))
    server.run()
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for chatty in ("httpx", "httpcore", "botocore", "boto3", "urllib3"):  # one line per request otherwise
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return args.run(args)
    except ProxyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
