"""Prometheus metrics of the proxy, in a registry of its own (so one process may hold several apps)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes: RSS must stay flat
        self.requests = Counter("gigatile_proxy_requests_total", "Requests answered, by status and X-Cache",
                                ["status", "cache"], registry=self.registry)
        self.upstream = Counter("gigatile_proxy_upstream_requests_total",
                                "Requests sent to backends, by outcome (ok, http_5xx, error)", ["outcome"],
                                registry=self.registry)
        self.upstream_seconds = Histogram("gigatile_proxy_upstream_seconds", "Backend response time",
                                          buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5),
                                          registry=self.registry)
        self.coalesced = Counter("gigatile_proxy_coalesced_total",
                                 "Misses served by another request's backend fetch", registry=self.registry)
        self.hit_ok = self.requests.labels("200", "HIT")  # bound once: the hot path only increments

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read when scraped (cache bytes, live backends ...)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
