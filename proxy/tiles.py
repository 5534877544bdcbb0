"""The proxied routes: memory LRU -> disk cache -> coalesced backend fetch, with stale-if-error.

``X-Cache`` says where the answer came from: HIT (memory or disk, fresh), MISS (a backend answered now),
STALE (an expired entry of an unversioned URL, served because no backend could answer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gigaformat.forwarding import forwarding_headers
from proxy.cache import DiskCache, name_of
from proxy.coalesce import Coalescer
from proxy.entry import CORS, Entry, lifetime, make_entry
from proxy.errors import NoBackend
from proxy.memory import MemoryCache
from proxy.metrics import ProxyMetrics
from proxy.registry import Registry
from proxy.responses import etag_matches, send_response
from proxy.upstream import Fetched, Upstream


@dataclass(slots=True)
class Outcome:
    """What the access log says about one proxied request."""

    status: int
    cache: str
    bytes: int
    backend: str = "-"


@dataclass(slots=True)
class Flight:
    """One backend fetch, shared by every request coalesced onto it."""

    fetched: Fetched
    entry: Entry | None  # set when the response may be cached
    stored: bool = False  # written to disk (by the first request answered from this flight)


class TileService:
    def __init__(self, registry: Registry, upstream: Upstream, memory: MemoryCache, disk: DiskCache,
                 metrics: ProxyMetrics):
        self.registry = registry
        self.upstream = upstream
        self.memory = memory
        self.disk = disk
        self.metrics = metrics
        self.coalescer: Coalescer[Flight] = Coalescer(metrics.coalesced.inc)
        self.hits = self.misses = self.stale = 0

    async def serve(self, send, target: bytes, path: str, versioned: bool, head: bool,
                    if_none_match: bytes, scope: dict | None = None) -> Outcome | None:
        """Answer ``target``; None when it is neither cached nor under a claimed route (not ours). A miss goes
        to the backend with the forwarding headers of ``scope`` (the client, scheme and Host it used)."""
        now = time.time()
        entry = self.memory.get(target)
        if entry is not None and now < entry.expires:
            return await self._replay(send, entry, b"HIT", now, head, if_none_match)
        if entry is None and not self.registry.claims(path):
            return None
        stale = entry
        name = name_of(target)
        if self.disk.contains(name):
            found = await self.disk.read(name, target)
            if found is not None and found.fresh(now):
                self.memory.put(found)
                return await self._replay(send, found, b"HIT", now, head, if_none_match)
            stale = found or stale
        extra = forwarded(scope) if scope is not None else b""
        # IIIF documents carry ids built from the forwarded origin and answer by Accept: never shared across them
        key = (name, extra) if path.startswith("/iiif/") else name
        try:
            flight = await self.coalescer.run(key, lambda: self._fetch(target, path, extra))
        except NoBackend:
            if stale is not None and not versioned:
                return await self._replay(send, stale, b"STALE", time.time(), head, if_none_match)
            raise
        self.misses += 1
        if flight.entry is not None:
            try:
                outcome = await self._replay(send, flight.entry, b"MISS", now, head, if_none_match)
            finally:
                if not flight.stored:  # after the answer is out: the disk write is off the miss's latency
                    flight.stored = True
                    self.disk.store(flight.entry)
            outcome.backend = flight.fetched.backend
            return outcome
        fetched = flight.fetched
        headers = [*fetched.headers, *CORS, (b"content-length", str(len(fetched.body)).encode()),
                   (b"x-cache", b"MISS")]
        await send_response(send, fetched.status, headers, fetched.body, head)
        self.metrics.requests.labels(str(fetched.status), "MISS").inc()
        return Outcome(fetched.status, "MISS", len(fetched.body), fetched.backend)

    async def _fetch(self, target: bytes, path: str, extra: bytes) -> Flight:
        fetched = await self.upstream.fetch(target, path, extra)
        if fetched.status != 200:
            return Flight(fetched, None)
        cache_control = next((v for n, v in fetched.headers if n == b"cache-control"), b"")
        seconds = lifetime(cache_control.decode("latin-1"))
        if seconds is None:
            return Flight(fetched, None)
        entry = make_entry(target, fetched.headers, fetched.body, time.time(), seconds)
        self.memory.put(entry)
        return Flight(fetched, entry)

    async def _replay(self, send, entry: Entry, cache: bytes, now: float, head: bool,
                      if_none_match: bytes) -> Outcome:
        if cache == b"HIT":
            self.hits += 1
            headers = entry.hit_headers
        else:
            if cache == b"STALE":
                self.stale += 1
            headers = [*entry.hit_headers[:-1], (b"x-cache", cache)]
        if if_none_match and etag_matches(if_none_match, entry.etag):
            kept = [(n, v) for n, v in headers if n != b"content-length" and n != b"content-type"]
            await send_response(send, 304, kept, b"", True)
            self.metrics.requests.labels("304", cache.decode()).inc()
            return Outcome(304, cache.decode(), 0)
        await send_response(send, 200, headers, entry.body, head)
        if cache == b"HIT":
            self.metrics.hit_ok.inc()
        else:
            self.metrics.requests.labels("200", cache.decode()).inc()
        return Outcome(200, cache.decode(), len(entry.body))

    def status(self) -> dict:
        served = self.hits + self.misses + self.stale
        return {
            "dir": str(self.disk.root), "bytes": self.disk.bytes, "max_bytes": self.disk.max_bytes,
            "entries": len(self.disk), "max_entries": self.disk.max_entries, "evictions": self.disk.evictions,
            "pending_writes": self.disk.pending_writes, "dropped_writes": self.disk.dropped_writes,
            "memory_bytes": self.memory.bytes, "memory_max_bytes": self.memory.max_bytes,
            "memory_entries": len(self.memory), "hits": self.hits, "misses": self.misses, "stale": self.stale,
            "hit_rate": round(self.hits / served, 4) if served else None,
            "coalesced": self.coalescer.shared, "in_flight": len(self.coalescer),
        }


def forwarded(scope: dict) -> bytes:
    """The header lines a backend gets about the client: who it is, the scheme and Host it used, what it
    accepts (``Accept`` picks the media type of IIIF documents)."""
    host = accept = b""
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
        elif name == b"accept":
            accept = value
    client = (scope.get("client") or ("",))[0]
    lines = forwarding_headers(client, scope.get("scheme", "http"), host.decode("latin-1"))
    if accept and len(accept) <= 256 and all(32 <= c < 127 for c in accept):
        lines += b"Accept: " + accept + b"\r\n"
    return lines
