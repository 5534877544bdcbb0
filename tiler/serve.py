"""``tiler serve``: run the render server (uvicorn, several worker processes forked from this one, see
tiler.forked) and its heartbeat."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from gigaformat.commandline import LOG_FORMAT
from tiler.settings import ENV_KEY, ServeSettings

log = logging.getLogger(__name__)


def worker_logging(level: int) -> dict:
    """uvicorn's ``log_config`` (it replaces the process's logging set-up with it): without this the workers'
    INFO lines (dataset loaded, generation switched) are lost."""
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
                          settings.ttl_seconds, root=settings.root)
    heartbeat.start()
    return heartbeat


def uvicorn_config(settings: ServeSettings) -> uvicorn.Config:
    return uvicorn.Config("tiler.app:create_app", factory=True, host=settings.host, port=settings.port,
                          workers=settings.workers, log_level="warning", access_log=False,
                          proxy_headers=False,  # the app reads forwarding headers itself, from trusted peers only
                          log_config=worker_logging(logging.getLogger().getEffectiveLevel()),
                          timeout_graceful_shutdown=5)


def serve(settings: ServeSettings) -> None:
    """Serve until SIGINT/SIGTERM; registration (if a bucket is set) is withdrawn on the way out."""
    settings.root.joinpath("data", "log").mkdir(parents=True, exist_ok=True)
    os.environ[ENV_KEY] = settings.to_env()
    with tempfile.TemporaryDirectory(prefix="gigatile-metrics-") as metrics_dir:
        if settings.workers > 1:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client is imported
            serve_forked(settings)
        else:
            serve_in_process(settings)


def serve_in_process(settings: ServeSettings) -> None:
    """One worker: uvicorn in this process, the heartbeat in a thread beside it."""
    heartbeats = []
    if settings.bucket:  # built in a thread: its S3 client (boto3's import) must not delay the server's start
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
    try:
        server = uvicorn.Server(uvicorn_config(settings))
        server.run()
        if not server.started:
            raise SystemExit(STARTUP_FAILURE)
    finally:
        if settings.bucket:
            starter.join()
        for heartbeat in heartbeats:
            heartbeat.stop()


def run_heartbeat(settings: ServeSettings) -> int:
    """The heartbeat's own process (forked beside the workers): register, renew, withdraw on SIGTERM."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT: a terminal's Ctrl-C reaches the whole group
        signal.signal(sig, lambda *_: stopping.set())
    try:
        heartbeat = start_heartbeat(settings)
    except Exception:  # a node that cannot register must not serve unannounced: the server stops
        log.exception("registration could not start; stopping")
        return 1
    while not stopping.wait(1.0):
        pass
    heartbeat.stop()
    return 0


def forget_worker_metrics(pid: int) -> None:
    """A worker that ended: its gauges leave /metrics (prometheus_client keeps a dead pid's "live" files
    until told; a worker forked in its place would else count twice in ``gigatile_render_queue_limit``)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def serve_forked(settings: ServeSettings) -> None:
    """Several workers: the app imported and the socket bound here, once; the workers forked from this
    process (tiler.forked), which only supervises them. The heartbeat's process is forked first, so that its
    S3 client (boto3's import) is built while this one imports the app."""
    from tiler.forked import ForkedWorkers, WorkerStartFailure, fork_helper

    workers = ForkedWorkers(settings.workers, on_exit=forget_worker_metrics)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, workers.stop)
    heartbeat = fork_helper(lambda: run_heartbeat(settings)) if settings.bucket else None
    sock = None
    try:
        if heartbeat is not None:
            workers.watch(heartbeat, "the heartbeat")
        import tantivy  # noqa: F401 - every generation's items index opens with it: imported once too (0.06 s)

        from tiler import app  # noqa: F401 - imported once, inherited by every worker

        if settings.bucket:  # a lazy start's S3 client: its modules imported once too (lazyfetch)
            from tiler.lazyfetch import import_client_modules

            import_client_modules()

        config = uvicorn_config(settings)
        sock = config.bind_socket()
        workers.start(config, sock)
        workers.run()
    except WorkerStartFailure as exc:
        log.error("%s; stopping", exc)
        raise SystemExit(STARTUP_FAILURE) from None
    except RuntimeError as exc:
        log.error("%s; stopping", exc)
        raise SystemExit(1) from None
    finally:
        workers.terminate(set(workers.pids))
        if heartbeat is not None:  # after the workers: the record is withdrawn on the way out
            workers.terminate({heartbeat})
        if sock is not None:
            sock.close()
