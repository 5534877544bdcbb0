"""Prometheus metrics of the proxy, in a registry of its own (so one process may hold several apps)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from gigaformat.clock import parse_iso


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes: RSS must stay flat
        self.requests = Counter("gigatile_proxy_requests_total", "Requests answered, by status and X-Cache",
                                ["status", "cache"], registry=self.registry)
        self.upstream = Counter("gigatile_proxy_upstream_requests_total",
                                "Requests sent to backends, by outcome (ok; other_version: a tile older than the "
                                "version asked, the next backend tried; http_5xx; error)", ["outcome"],
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

    def collect_backends(self, rows: Callable[[], list[dict]]) -> None:
        """Per-backend gauges read from the registry at every scrape (``rows``: /proxy/status's backends)."""
        self.registry.register(_BackendCollector(rows))

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _BackendCollector:
    """``gigatile_proxy_backend_*{backend=…}``: each registered record's heartbeat age, TTL, liveness and the
    generation of each dataset it serves. A SIGKILLed node stays here (heartbeat age growing past its TTL)
    until its record is swept, which is what the heartbeat alert needs."""

    def __init__(self, rows: Callable[[], list[dict]]):
        self.rows = rows

    def describe(self):
        return []

    def collect(self):
        age = GaugeMetricFamily("gigatile_proxy_backend_heartbeat_age_seconds",
                                "Seconds since the backend's record was last renewed", labels=["backend"])
        ttl = GaugeMetricFamily("gigatile_proxy_backend_ttl_seconds", "The TTL the backend's record states",
                                labels=["backend"])
        live = GaugeMetricFamily("gigatile_proxy_backend_live", "1 while the backend takes traffic",
                                 labels=["backend"])
        generation = GaugeMetricFamily("gigatile_proxy_backend_generation", "Generation the backend serves",
                                       labels=["backend", "dataset"])
        now = datetime.now(UTC)
        for row in self.rows():
            if "id" not in row:
                continue
            age.add_metric([row["id"]], (now - parse_iso(row["heartbeat"])).total_seconds())  # parsed at admission
            ttl.add_metric([row["id"]], row["ttl_seconds"])
            live.add_metric([row["id"]], 1.0 if row["state"] == "live" else 0.0)
            for dataset, served in sorted(row["datasets"].items()):
                generation.add_metric([row["id"], dataset], served)
        yield from (age, ttl, live, generation)
