"""The fleet page's data (``/proxy/fleet``): a short history of the fleet as this proxy sees it.

Every ``--fleet-seconds`` one sample: for this proxy, requests/s and the cache hit ratio over the interval;
for each registered node, its state, requests/s the proxy sent it, the p99 of their latency, the generation
of each dataset it serves (from its record), and what its own ``/metrics`` says (tile-cache hit ratio,
render queue, free disk). The last ``HISTORY`` samples are kept (bounded memory) so the page shows plots at
once. Off the request path: the only thing a request does is append a latency to a bounded deque on a miss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import httpx
from prometheus_client.parser import text_string_to_metric_families

from proxy.registry import Backend, Registry, iso_time
from proxy.tiles import TileService

log = logging.getLogger(__name__)

HISTORY = 120  # samples kept (10 minutes at the default 5 s)
NODE_METRICS = ("gigatile_tile_cache", "gigatile_render_queue", "gigatile_render_queue_limit",
                "gigatile_disk_free_bytes", "gigatile_disk_size_bytes")


def p99(values: list[float]) -> float | None:
    """The 99th percentile (nearest rank), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def node_figures(text: str) -> dict[str, float]:
    """The few node metrics the page shows, summed over labels, from a Prometheus exposition."""
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in NODE_METRICS:
            continue
        if family.name == "gigatile_tile_cache":  # a result never seen yet counts 0
            figures.setdefault("cache_hit", 0.0)
            figures.setdefault("cache_miss", 0.0)
        for sample in family.samples:
            if family.name == "gigatile_tile_cache":
                if sample.name.endswith("_total"):
                    key = "cache_" + sample.labels.get("result", "")
                    figures[key] = figures.get(key, 0.0) + sample.value
            else:
                figures[family.name] = figures.get(family.name, 0.0) + sample.value
    return figures


class FleetHistory:
    def __init__(self, registry: Registry, tiles: TileService, http: httpx.AsyncClient, seconds: float):
        self.registry = registry
        self.tiles = tiles
        self.http = http
        self.seconds = seconds
        self.samples: deque[dict] = deque(maxlen=HISTORY)
        self._last: dict = {}

    async def _scrape(self, backend: Backend) -> dict[str, float]:
        try:
            response = await self.http.get(backend.base_url + "/metrics")
            if response.status_code == 200:
                return await asyncio.to_thread(node_figures, response.text)
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("fleet scrape failed id=%s error=%s", backend.id, exc)
        return {}

    async def sample(self) -> dict:
        """Take one sample now (and keep it)."""
        now = time.time()
        last = self._last
        dt = max(1e-3, now - last["time"]) if last else None
        backends = [b for b in self.registry.backends.values() if b.fresh]
        scraped = await asyncio.gather(*(self._scrape(b) for b in backends))
        counts = {"hits": self.tiles.hits, "misses": self.tiles.misses, "stale": self.tiles.stale}
        served = {k: v - last.get("counts", {}).get(k, 0) for k, v in counts.items()} if last else None
        total = sum(served.values()) if served else 0
        proxy = {"rps": round(total / dt, 2) if dt else None,
                 "hit_ratio": round(served["hits"] / total, 4) if served and total else None}
        nodes = {}
        for backend, figures in zip(backends, scraped, strict=True):
            before = last.get("nodes", {}).get(backend.id, {})
            latencies = list(backend.latencies)
            backend.latencies.clear()
            sent = backend.stats["requests"]
            hits, misses = figures.get("cache_hit"), figures.get("cache_miss")
            cache_ratio = None
            if hits is not None and misses is not None and "cache_hit" in before:
                dh, dm = hits - before["cache_hit"], misses - before["cache_miss"]
                cache_ratio = round(dh / (dh + dm), 4) if dh + dm > 0 else None
            late = p99(latencies)
            nodes[backend.id] = {
                "state": "live" if backend.live else "unhealthy",
                "rps": round((sent - before["sent"]) / dt, 2) if dt and "sent" in before else None,
                "p99_ms": round(late * 1e3, 2) if late is not None else None,
                "generation": backend.record.datasets, "cache_hit_ratio": cache_ratio,
                "queue": figures.get("gigatile_render_queue"),
                "disk_free_bytes": figures.get("gigatile_disk_free_bytes"),
                "sent": sent, "cache_hit": hits, "cache_miss": misses,
            }
        doc = {"time": now, "at": iso_time(now), "proxy": proxy, "nodes": nodes, "counts": counts}
        self._last = doc
        self.samples.append(doc)
        return doc

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # the page must not take the proxy down
                log.exception("fleet sample failed")
            await asyncio.sleep(self.seconds)

    def document(self) -> dict:
        """``/proxy/fleet``: the samples, oldest first, and the nodes as the registry has them now."""
        samples = [{"at": s["at"], "proxy": s["proxy"],
                    "nodes": {k: {f: v for f, v in n.items() if f not in ("sent", "cache_hit", "cache_miss")}
                              for k, n in s["nodes"].items()}} for s in self.samples]
        rows = [{"id": row["id"], "state": row["state"], "datasets": row["datasets"], "heartbeat": row["heartbeat"],
                 "instance_id": row["instance_id"], "hash_share": row["hash_share"]}
                for row in self.registry.status() if "id" in row]
        return {"interval_seconds": self.seconds, "history": HISTORY, "samples": samples, "nodes": rows,
                "live": [b.id for b in self.registry.live]}
