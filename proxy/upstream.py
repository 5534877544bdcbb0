"""Forwarding to the backends: a lean pooled HTTP/1.1 client, the owner first, the next ones on failure.

Why not httpx here: measured on this machine, an ``httpx.AsyncClient`` GET costs about 0.4 ms more than the
same exchange on a kept-alive asyncio stream, and a miss may add at most 1 ms over asking the node directly.
The exchange the proxy needs is narrow (GET, identity encoding, Content-Length or chunked bodies from nodes it
knows), so it is done here on asyncio streams; health checks, which are not on the request path, use httpx.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from proxy import routing
from proxy.errors import NoBackend
from proxy.metrics import ProxyMetrics
from proxy.registry import Registry
from proxy.target import asked_version

log = logging.getLogger(__name__)

PASSED = (b"content-type", b"cache-control", b"etag", b"x-tile-version", b"retry-after", b"last-modified", b"link",
          b"location", b"vary")
STREAM_LIMIT = 256 << 10  # read buffer; also the longest response head accepted
MAX_BODY = 32 << 20       # a tile is tens of kB; anything this big is not one
MAX_IDLE = 64             # kept-alive connections per backend


class UpstreamFailure(Exception):
    """The backend could not give a whole response (connection, timeout, malformed answer)."""


@dataclass(slots=True)
class Fetched:
    status: int
    headers: list[tuple[bytes, bytes]]  # the PASSED subset, lower-case names
    body: bytes
    backend: str


class _Connection:
    __slots__ = ("reader", "writer", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer, self.reused = reader, writer, False

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


async def _read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> tuple[bytes, bool]:
    """The body and whether the connection ends with it (no length given: read to EOF)."""
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts, size = [], 0
        while True:
            line = await reader.readuntil(b"\r\n")
            length = int(line.split(b";", 1)[0].strip(), 16)
            if length == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(parts), False
            size += length
            if size > MAX_BODY:
                raise UpstreamFailure(f"response body over {MAX_BODY} bytes")
            parts.append(await reader.readexactly(length))
            await reader.readexactly(2)
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        if not 0 <= length <= MAX_BODY:
            raise UpstreamFailure(f"response body of {length} bytes refused")
        return await reader.readexactly(length), False
    body = await reader.read(MAX_BODY + 1)
    while len(body) <= MAX_BODY and not reader.at_eof():
        body += await reader.read(MAX_BODY + 1 - len(body))
    if len(body) > MAX_BODY:
        raise UpstreamFailure(f"response body over {MAX_BODY} bytes")
    return body, True


async def _exchange(connection: _Connection, request: bytes) -> tuple[int, dict[bytes, bytes], bytes, bool]:
    """Send ``request``; (status, headers, body, keep-alive) of the response."""
    connection.writer.write(request)
    head = await connection.reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise UpstreamFailure(f"not an HTTP/1.x response: {lines[0][:60]!r}")
    status = int(rest[:3])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body, ends = (b"", False) if status in (204, 304) or 100 <= status < 200 else await _read_body(
        connection.reader, headers)
    keep = not ends and version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
    return status, headers, body, keep


class Pool:
    """Kept-alive connections per backend (``host:port``), at most ``MAX_IDLE`` idle each."""

    def __init__(self, connect_timeout: float, read_timeout: float):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: dict[str, deque[_Connection]] = {}

    async def get(self, backend_id: str, base_url: str, target: bytes,
                  extra: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:
        """GET ``target`` (``extra``: more header lines, each ending in CRLF); a kept-alive connection the
        backend closed meanwhile is retried once on a new one.

        Raises UpstreamFailure (or OSError, TimeoutError) when the backend cannot answer.
        """
        request = b"GET " + target + b" HTTP/1.1\r\nHost: " + backend_id.encode() + \
            b"\r\nAccept-Encoding: identity\r\nUser-Agent: tile-proxy\r\n" + extra + b"\r\n"
        connection = self._take(backend_id)
        while True:
            if connection is None:
                connection = await self._connect(base_url)
            try:
                async with asyncio.timeout(self.read_timeout):
                    status, headers, body, keep = await _exchange(connection, request)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                connection.close()
                if connection.reused and not getattr(exc, "partial", b""):
                    connection = None  # closed by the backend while idle: not its fault, try a new one
                    continue
                raise UpstreamFailure(f"{exc.__class__.__name__}: {exc}") from None
            except (asyncio.LimitOverrunError, ValueError) as exc:
                connection.close()
                raise UpstreamFailure(f"malformed response ({exc.__class__.__name__}: {exc})") from None
            except BaseException:
                connection.close()
                raise
            if keep:
                self._give(backend_id, connection)
            else:
                connection.close()
            return status, headers, body

    async def _connect(self, base_url: str) -> _Connection:
        host, _, port = base_url.removeprefix("http://").rpartition(":")
        async with asyncio.timeout(self.connect_timeout):
            reader, writer = await asyncio.open_connection(host.strip("[]"), int(port), limit=STREAM_LIMIT)
        return _Connection(reader, writer)

    def _take(self, backend_id: str) -> _Connection | None:
        idle = self._idle.get(backend_id)
        while idle:
            connection = idle.pop()
            if connection.usable():
                connection.reused = True
                return connection
            connection.close()
        return None

    def _give(self, backend_id: str, connection: _Connection) -> None:
        idle = self._idle.setdefault(backend_id, deque())
        if len(idle) >= MAX_IDLE:
            connection.close()
        else:
            idle.append(connection)

    def keep_only(self, backend_ids: set[str]) -> None:
        """Close the idle connections of backends that are gone."""
        for backend_id in [b for b in self._idle if b not in backend_ids]:
            for connection in self._idle.pop(backend_id):
                connection.close()

    def close(self) -> None:
        self.keep_only(set())


def _older(version: bytes | None, asked: bytes | None) -> bool:
    """True when a backend answered a tile of an older version than the one the URL asks for."""
    return version is not None and asked is not None and version.isdigit() and asked.isdigit() \
        and int(version) < int(asked)


class Upstream:
    def __init__(self, pool: Pool, registry: Registry, metrics: ProxyMetrics, max_attempts: int):
        self.pool = pool
        self.registry = registry
        self.metrics = metrics
        self.max_attempts = max(1, max_attempts)

    async def fetch(self, target: bytes, path: str, extra: bytes = b"") -> Fetched:
        """GET ``target`` from the backend owning it, or the next ones when it fails (connection, 5xx);
        ``extra`` header lines go with it (the forwarding headers).

        Raises NoBackend with the reason when no backend is live or none could answer.
        """
        live = self.registry.live_for(path)
        order = routing.rank(target, list(live))[:self.max_attempts]
        if not order:
            known = sum(1 for b in self.registry.backends.values() if b.serves(path))
            raise NoBackend(f"no live backend for {path} ({known} registered, none fresh and healthy)")
        failures = []
        asked = asked_version(target)
        behind: Fetched | None = None  # an answer older than the version asked (a node not switched yet)
        for backend_id in order:
            backend = live[backend_id]
            backend.stats["requests"] += 1
            started = time.perf_counter()
            try:
                status, headers, body = await self.pool.get(backend_id, backend.base_url, target, extra)
            except (UpstreamFailure, OSError, TimeoutError) as exc:
                reason = f"{exc.__class__.__name__}: {exc}" if not isinstance(exc, UpstreamFailure) else str(exc)
                self.metrics.upstream.labels("error").inc()
                self.registry.eject(backend, reason)
                failures.append(f"{backend_id}: {reason}")
                continue
            elapsed = time.perf_counter() - started
            self.metrics.upstream_seconds.observe(elapsed)
            backend.latencies.append(elapsed)
            if status >= 500 and status != 501:  # 501: a valid request for a feature not offered; an answer
                self.metrics.upstream.labels("http_5xx").inc()
                if status != 503:  # 503 is a busy node, not a broken one
                    self.registry.eject(backend, f"answered {status}")
                failures.append(f"{backend_id}: answered {status}")
                continue
            fetched = Fetched(status, [(n, v) for n, v in headers.items() if n in PASSED], body, backend_id)
            if behind is not None or status != 200 or not _older(headers.get(b"x-tile-version"), asked):
                self.metrics.upstream.labels("ok").inc()
                return fetched
            # During a rolling switch the owner may not have switched to the generation the client knows of
            # already: the next backend may have, and its answer is the one the URL names (cached for a year,
            # where the owner's is kept a minute). One more backend at most: a made-up v costs two renders.
            behind = fetched
            self.metrics.upstream.labels("other_version").inc()
        if behind is not None:
            return behind
        if len(failures) > 1:
            log.warning("all attempts failed path=%s failures=%s", path, "; ".join(failures))
        raise NoBackend("no backend could answer: " + "; ".join(failures))
