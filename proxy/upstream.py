"""Forwarding to the backends: one pooled HTTP client, the owner first, the next ones on failure."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import httpx

from proxy import routing
from proxy.errors import ProxyError
from proxy.metrics import ProxyMetrics
from proxy.registry import Registry

log = logging.getLogger(__name__)

PASSED = (b"content-type", b"cache-control", b"etag", b"x-tile-version", b"retry-after")


@dataclass(slots=True)
class Fetched:
    status: int
    headers: list[tuple[bytes, bytes]]  # the PASSED subset, lower-case names
    body: bytes
    backend: str


def make_client(connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    """The pooled client for proxied requests (keep-alive to every backend)."""
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout, pool=read_timeout)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=30)
    return httpx.AsyncClient(timeout=timeout, limits=limits, headers={"accept-encoding": "identity"},
                             follow_redirects=False, trust_env=False)


class Upstream:
    def __init__(self, client: httpx.AsyncClient, registry: Registry, metrics: ProxyMetrics, max_attempts: int):
        self.client = client
        self.registry = registry
        self.metrics = metrics
        self.max_attempts = max(1, max_attempts)

    async def fetch(self, target: bytes, path: str) -> Fetched:
        """GET ``target`` from the backend owning it, or the next ones when it fails (connection, 5xx).

        Raises ProxyError(502) with the reason when no backend is live or none could answer.
        """
        live = self.registry.live_for(path)
        order = routing.rank(target, list(live))[:self.max_attempts]
        if not order:
            known = sum(1 for b in self.registry.backends.values() if b.serves(path))
            raise ProxyError(f"no live backend for {path} ({known} registered, none fresh and healthy)", 502)
        url_path = target.decode()
        failures = []
        for backend_id in order:
            backend = live[backend_id]
            backend.stats["requests"] += 1
            started = time.perf_counter()
            try:
                response = await self.client.get(backend.base_url + url_path)
            except httpx.HTTPError as exc:
                reason = f"{exc.__class__.__name__} {exc}".strip()
                self.metrics.upstream.labels("error").inc()
                self.registry.eject(backend, reason)
                failures.append(f"{backend_id}: {reason}")
                continue
            self.metrics.upstream_seconds.observe(time.perf_counter() - started)
            if response.status_code >= 500:
                self.metrics.upstream.labels("http_5xx").inc()
                if response.status_code != 503:  # 503 is a busy node, not a broken one
                    self.registry.eject(backend, f"answered {response.status_code}")
                failures.append(f"{backend_id}: answered {response.status_code}")
                continue
            self.metrics.upstream.labels("ok").inc()
            headers = [(name.lower(), value) for name, value in response.headers.raw if name.lower() in PASSED]
            return Fetched(response.status_code, headers, response.content, backend_id)
        if len(failures) > 1:
            log.warning("all attempts failed path=%s failures=%s", path, "; ".join(failures))
        raise ProxyError("no backend could answer: " + "; ".join(failures), 502)
