"""The proxy's ASGI application: a lean dispatcher (the tile hit path is a few dictionary lookups).

Order per request: check the URL (400/414 before anything else) -> operator endpoints (/healthz,
/metrics, /proxy/status) -> cached or claimed routes (``tiles.TileService``) -> the viewer at ``/`` (and at
``/viewer/``, a render node's address for it).
Errors are ``ProxyError`` subclasses, turned into a one-line answer in one place (``handle``), with the status
``responses.STATUS_CODES`` maps their type to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import httpx
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from proxy.access_log import AccessLog, loggable
from proxy.cache import DiskCache
from proxy.discovery import TargetsFile
from proxy.errors import MethodNotAllowed, NoRoute, ProxyError
from proxy.fleet import FleetHistory
from proxy.memory import MemoryCache
from proxy.metrics import ProxyMetrics
from proxy.registry import Registry, iso_time, make_s3_client
from proxy.responses import send_error, send_preflight, send_text, status_of
from proxy.settings import ProxySettings
from proxy.target import check_target, is_versioned
from proxy.tiles import Outcome, TileService
from proxy.upstream import Pool, Upstream

log = logging.getLogger(__name__)

STARTUP_REFRESH_SECONDS = 10.0  # the first registry poll, before serving; S3 may be slow or away


class ProxyApp:
    """``tile-proxy``'s ASGI app. ``s3`` is a boto3 S3 client (from the AWS chain by default)."""

    def __init__(self, settings: ProxySettings, s3=None):
        if s3 is None:
            s3 = make_s3_client()
        self.settings = settings
        self.metrics = ProxyMetrics()
        self.health_client = httpx.AsyncClient(timeout=min(2.0, max(0.5, settings.health_seconds)),
                                               trust_env=False)
        self.pool = Pool(settings.connect_timeout, settings.read_timeout)
        self.registry = Registry(settings, s3, self.health_client, on_change=self.pool.keep_only)
        if settings.sd_file is not None:
            targets_file = TargetsFile(settings.sd_file)
            self.registry.after_poll.append(lambda: targets_file.update(list(self.registry.backends.values())))
        self.memory = MemoryCache(settings.memory_bytes)
        self.disk = DiskCache(settings.cache_dir, settings.cache_bytes)
        upstream = Upstream(self.pool, self.registry, self.metrics, settings.max_attempts)
        self.tiles = TileService(self.registry, upstream, self.memory, self.disk, self.metrics)
        self.fleet = FleetHistory(self.registry, self.tiles, self.health_client, settings.fleet_seconds)
        self.operator = {"/healthz": self._healthz, "/metrics": self._metrics, "/proxy/status": self._status,
                         "/proxy/fleet": self._fleet}
        self.static: StaticFiles | None = None
        self.tasks: list[asyncio.Task] = []
        self.access_log = AccessLog()
        self.access = self.access_log.enabled
        self.started = time.time()
        gauges = [
            ("gigatile_proxy_cache_bytes", "Bytes in the disk cache", lambda: self.disk.bytes),
            ("gigatile_proxy_cache_entries", "Entries in the disk cache", lambda: len(self.disk)),
            ("gigatile_proxy_memory_cache_bytes", "Bytes in the in-memory LRU", lambda: self.memory.bytes),
            ("gigatile_proxy_backends_live", "Backends taking traffic", lambda: len(self.registry.live)),
            ("gigatile_proxy_backends_registered", "Registration records admitted",
             lambda: len(self.registry.backends)),
            ("gigatile_proxy_cache_evictions", "Disk cache entries evicted since start", lambda: self.disk.evictions),
        ]
        for name, documentation, read in gauges:
            self.metrics.gauge(name, documentation, read)
        self.metrics.collect_backends(self.registry.status)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def handle(self, scope, receive, send) -> None:
        began = time.perf_counter()
        method = scope["method"]
        head = method == "HEAD"
        path = scope["path"]
        raw_path = scope.get("raw_path") or path.encode()
        outcome: Outcome | None = None
        try:
            target = check_target(raw_path, scope["query_string"])
            if method == "OPTIONS":
                requested = next((v for n, v in scope["headers"] if n == b"access-control-request-headers"), b"")
                outcome = Outcome(204, "-", await send_preflight(send, requested))
            elif method != "GET" and not head:
                raise MethodNotAllowed(f"method {method} not allowed: only GET, HEAD and OPTIONS are served")
            elif (endpoint := self.operator.get(path)) is not None:
                outcome = Outcome(200, "-", await endpoint(send, head))
            else:
                if_none_match = b""
                for name, value in scope["headers"]:
                    if name == b"if-none-match":
                        if_none_match = value
                outcome = await self.tiles.serve(send, target, path, is_versioned(scope["query_string"]), head,
                                                 if_none_match, scope)
                if outcome is None:
                    outcome = await self._viewer(scope, receive, send, path)
        except ProxyError as exc:
            outcome = Outcome(status_of(exc), "-", await send_error(send, exc, head))
            self.metrics.requests.labels(str(outcome.status), "").inc()
        except Exception:
            log.exception("request failed path=%s", loggable(raw_path))
            with contextlib.suppress(Exception):  # the response may have started already
                await send_text(send, 500, "internal error in the proxy; see its log\n", head)
            outcome = Outcome(500, "-", 0)
        if self.access:
            query = scope["query_string"]
            self.access_log.add(method, raw_path + b"?" + query if query else raw_path, outcome.status,
                                outcome.cache, outcome.bytes, time.perf_counter() - began, outcome.backend,
                                (scope.get("client") or ("-",))[0])

    # -- operator surface ----------------------------------------------------------------------------------

    async def _healthz(self, send, head: bool) -> int:
        return await send_text(send, 200, "ok\n", head)

    async def _metrics(self, send, head: bool) -> int:
        body, content_type = self.metrics.exposition()
        return await send_text(send, 200, body.decode(), head, content_type.encode())

    async def _status(self, send, head: bool) -> int:
        registry = self.registry
        doc = {
            "backends": registry.status(),
            "live": [b.id for b in registry.live],
            "claimed_routes": [r + "*" if r.endswith("/") else r for r in registry.claimed],
            "registry": {"bucket": registry.bucket, "poll_seconds": self.settings.poll_seconds,
                         "health_seconds": self.settings.health_seconds,
                         "last_poll": iso_time(registry.polled), "error": registry.poll_error,
                         "sweep_ttls": self.settings.sweep_ttls, "swept": registry.swept,
                         "sd_file": str(self.settings.sd_file) if self.settings.sd_file else None,
                         "allow_net": [str(n) for n in self.settings.allow_nets]},
            "cache": self.tiles.status(),
            "started": iso_time(self.started),
        }
        return await send_text(send, 200, json.dumps(doc, indent=1) + "\n", head, b"application/json")

    async def _fleet(self, send, head: bool) -> int:
        return await send_text(send, 200, json.dumps(self.fleet.document()) + "\n", head, b"application/json")

    async def _viewer(self, scope, receive, send, path: str) -> Outcome:
        if not self.settings.viewer_dir.is_dir():
            if path == "/":
                raise NoRoute(f"no viewer installed ({self.settings.viewer_dir} is missing); "
                              "tiles are served under the claimed routes listed at /proxy/status")
            raise NoRoute(f"no backend claims {path}; claimed routes are listed at /proxy/status")
        if self.static is None:
            self.static = StaticFiles(directory=self.settings.viewer_dir, html=True)
        if path == "/viewer" or path.startswith("/viewer/"):  # a render node's viewer address works here too
            scope = {**scope, "path": path[len("/viewer"):] or "/"}
        status = [0]

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.static(scope, receive, capture)
        except HTTPException as exc:  # StaticFiles raises its 404/405 for an exception middleware to answer
            if exc.status_code == 405:
                raise MethodNotAllowed(str(exc.detail)) from None
            raise NoRoute(f"no backend claims {path} and the viewer has no such file") from None
        return Outcome(status[0], "-", 0)

    # -- life cycle ----------------------------------------------------------------------------------------

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Open the disk cache, read the registry once (bounded), then poll and check health in the background."""
        await asyncio.to_thread(self.disk.open)
        try:
            await asyncio.wait_for(self.registry.refresh(), STARTUP_REFRESH_SECONDS)
        except TimeoutError:
            log.warning("first registry refresh took over %.0f s; serving meanwhile", STARTUP_REFRESH_SECONDS)
        self.access = self.access_log.enabled
        self.tasks = [asyncio.create_task(self.registry.run_polls(), name="registry-poll"),
                      asyncio.create_task(self.registry.run_health_checks(), name="health-checks"),
                      asyncio.create_task(self._flush_access_log(), name="access-log"),
                      asyncio.create_task(self.fleet.run(), name="fleet-samples")]
        log.info("proxy ready bucket=%s cache_dir=%s live=%s", self.settings.bucket, self.settings.cache_dir,
                 ",".join(b.id for b in self.registry.live) or "none")

    async def _flush_access_log(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.access_log.flush()

    async def shutdown(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.pool.close()
        self.access_log.flush()
        await self.health_client.aclose()
        await asyncio.to_thread(self.disk.close)
        log.info("proxy stopped cache_entries=%d cache_bytes=%d", len(self.disk), self.disk.bytes)

