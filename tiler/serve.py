"""``tiler serve``: run the render server (uvicorn, several worker processes) and its heartbeat."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading

import uvicorn

from gigaformat.commandline import LOG_FORMAT
from tiler.settings import ENV_KEY, ServeSettings

log = logging.getLogger(__name__)


def worker_logging(level: int) -> dict:
    """uvicorn's ``log_config`` for each worker process: workers are spawned, so they do not inherit the
    parent's logging set-up, and without this their INFO lines (dataset loaded, generation switched) are lost."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT.replace("%(name)s", "worker=%(process)d %(name)s")}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "root": {"level": logging.getLevelName(level), "handlers": ["stderr"]},
    }


def start_heartbeat(settings: ServeSettings):
    """The node's registration (tiler.heartbeat), started: it writes the record once /readyz is green."""
    from tiler.heartbeat import Heartbeat

    heartbeat = Heartbeat(settings.bucket, settings.advertise or settings.host, settings.port,
                          f"http://{settings.host}:{settings.port}/readyz", settings.instance_id,
                          settings.ttl_seconds)
    heartbeat.start()
    return heartbeat


def serve(settings: ServeSettings) -> None:
    """Serve until SIGINT/SIGTERM; registration (if a bucket is set) is withdrawn on the way out."""
    settings.root.joinpath("data", "log").mkdir(parents=True, exist_ok=True)
    os.environ[ENV_KEY] = settings.to_env()
    heartbeats = []
    if settings.bucket:  # built in a thread: its S3 client (boto3's import) must not delay the workers' spawn
        def begin() -> None:
            try:
                heartbeats.append(start_heartbeat(settings))
            except Exception:  # a node that cannot register must not serve unannounced: stop (and be restarted)
                log.exception("registration could not start; stopping")
                os.kill(os.getpid(), signal.SIGTERM)

        starter = threading.Thread(target=begin, name="heartbeat-start", daemon=True)
        starter.start()
    # uvicorn re-raises a caught SIGTERM under the default handler, which would skip the deregistration below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="gigatile-metrics-") as metrics_dir:
        if settings.workers > 1:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            uvicorn.run("tiler.app:create_app", factory=True, host=settings.host, port=settings.port,
                        workers=settings.workers, log_level="warning", access_log=False,
                        proxy_headers=False,  # the app reads forwarding headers itself, from trusted peers only
                        log_config=worker_logging(logging.getLogger().getEffectiveLevel()),
                        timeout_graceful_shutdown=5)
        finally:
            if settings.bucket:
                starter.join()
            for heartbeat in heartbeats:
                heartbeat.stop()
