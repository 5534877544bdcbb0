"""``tiler serve``: run the render server (uvicorn, several worker processes) and its heartbeat."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile

import uvicorn

from gigaformat.commandline import LOG_FORMAT
from tiler.heartbeat import Heartbeat
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


def serve(settings: ServeSettings) -> None:
    """Serve until SIGINT/SIGTERM; registration (if a bucket is set) is withdrawn on the way out."""
    settings.root.joinpath("data", "log").mkdir(parents=True, exist_ok=True)
    os.environ[ENV_KEY] = settings.to_env()
    heartbeat = None
    if settings.bucket:
        address = settings.advertise or settings.host
        heartbeat = Heartbeat(settings.bucket, address, settings.port,
                              f"http://{settings.host}:{settings.port}/readyz", settings.instance_id,
                              settings.ttl_seconds)
        heartbeat.start()
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
            if heartbeat is not None:
                heartbeat.stop()
