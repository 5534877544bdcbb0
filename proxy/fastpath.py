"""The hot-tile hit path, answered inside uvicorn's HTTP protocol: no ASGI task, one write per response.

Profiling the hit path (py-spy --native under ``bench.proxy``) showed the proxy's own code at a fifth of
the event loop's time; the rest went to uvicorn creating and stepping an asyncio task per request and to two
``write`` system calls per response (head, then body). A request whose target is a fresh entry of the
in-memory LRU (``memory.py``) is therefore answered as soon as its headers are parsed: the entry's
pre-built response head, the Date line and the body go out in one ``writelines``. Everything else (misses,
disk hits, ``If-None-Match``, operator endpoints, the viewer, errors, pipelined requests queued behind a
slow one, a client not reading) takes uvicorn's ordinary path into ``ProxyApp``.

Only entries under a checked target are ever stored in the LRU, so a target found there needs no URL check
again. Keyed on uvicorn's httptools protocol (``uvicorn==0.54`` in constraints.txt); without httptools
installed, the proxy serves everything through the ordinary path.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.entry import Entry

if TYPE_CHECKING:
    from proxy.app import ProxyApp

_STATUS_LINE = b"HTTP/1.1 200 OK\r\n"


class _Answered:
    """Stands in for uvicorn's request cycle once a request was answered here (complete, nothing waits)."""

    response_complete = True
    keep_alive = True
    disconnected = False

    class message_event:  # noqa: N801 - uvicorn calls .set() on the cycle's event when the peer goes
        @staticmethod
        def set() -> None:
            return None


ANSWERED = _Answered()


def response_head(entry: Entry) -> bytes:
    """The status line and headers of a 200 HIT of ``entry`` (without Date and the blank line)."""
    return _STATUS_LINE + b"".join(name + b": " + value + b"\r\n" for name, value in entry.hit_headers)


def fast_protocol(app: ProxyApp) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with ``app``'s memory hits answered in place."""
    memory, tiles, metrics, access_log = app.memory, app.tiles, app.metrics, app.access_log  # bound once

    class FastHitProtocol(HttpToolsProtocol):
        _dates: list | None = None
        _date = b""

        def on_message_begin(self) -> None:
            # uvicorn builds the ASGI scope here; a hit never needs it, so it is built in _ordinary
            self.url = b""
            self.expect_100_continue = False
            self.headers = []

        def _ordinary(self) -> None:
            """Hand the request to uvicorn's own path (the ASGI app), with the scope it would have built."""
            url, headers, expect = self.url, self.headers, self.expect_100_continue
            super().on_message_begin()
            self.url, self.expect_100_continue = url, expect
            self.headers.extend(headers)  # the scope's "headers" is the list on_message_begin made
            super().on_headers_complete()

        def on_headers_complete(self) -> None:
            began = time.perf_counter()
            cycle = self.cycle
            if (cycle is not None and not cycle.response_complete) or self.flow.write_paused \
                    or self.parser.should_upgrade():
                return self._ordinary()  # keep the order behind a request still being answered
            method = self.parser.get_method()
            if method != b"GET" and method != b"HEAD":
                return self._ordinary()
            entry = memory.get(self.url)
            if entry is None or time.time() >= entry.expires:
                return self._ordinary()
            for name, _ in self.headers:
                if name == b"if-none-match":  # 304s are decided in one place (tiles.py)
                    return self._ordinary()
            keep_alive = self.parser.should_keep_alive() and self.parser.get_http_version() != "1.0"
            dates = self.server_state.default_headers
            if dates is not self._dates:
                self._dates = dates
                self._date = b"".join(name + b": " + value + b"\r\n" for name, value in dates)
            head = entry.wire or response_head(entry)
            entry.wire = head
            tail = self._date + (b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
            self.transport.writelines((head, tail) if method == b"HEAD" else (head, tail, entry.body))
            self.cycle = ANSWERED
            tiles.hits += 1
            metrics.hit_ok.inc()
            self.server_state.total_requests += 1
            if app.access:
                access_log.add(method.decode(), self.url, 200, "HIT", len(entry.body), time.perf_counter() - began,
                               "-", (self.client or ("-",))[0])
            if not keep_alive:
                self.transport.close()
            elif self.timeout_keep_alive_task is None:  # data_received cancels it; arm it once per read
                self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                    self.timeout_keep_alive_handler)
            return None

    return FastHitProtocol
