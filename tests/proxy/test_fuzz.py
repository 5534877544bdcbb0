"""No request target through tile-proxy gets a 5xx: hypothesis draws /tiles/ URLs (tests/tiler/test_fuzz_urls.py's
grammar), raw bytes and odd methods, sent byte for byte (no client normalising them) to a proxy in front of a real
node; neither process logs a traceback."""

from __future__ import annotations

import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.processes import http_ok, wait_for
from tests.proxy.conftest import ADDRESSES
from tests.tiler.test_fuzz_urls import tile_urls


def clean(data: bytes) -> bytes:
    return data.replace(b" ", b"%20").replace(b"\r", b"").replace(b"\n", b"")


RAW_TARGET = st.one_of(
    tile_urls().map(str.encode),
    st.binary(min_size=1, max_size=60).map(lambda b: b"/" + clean(b)),
    st.tuples(st.sampled_from([b"/tiles/", b"/iiif/3/", b"/proxy/", b"/", b"//", b"/tiles/covers/", b"/metrics"]),
              st.binary(max_size=40)).map(lambda t: t[0] + clean(t[1])),
)
METHOD = st.sampled_from([b"GET", b"GET", b"HEAD", b"OPTIONS", b"POST", b"DELETE", b"BREW"])


def raw_status(port: int, method: bytes, target: bytes) -> int:
    """``method target`` sent byte for byte; the answer's status, 0 if the parser closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = sock.recv(4096)
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0


def test_no_request_through_tile_proxy_gets_a_5xx(nodes, proxies):
    node = nodes.start(ADDRESSES[0])
    proxy = proxies.start()
    proxy.wait_live({node.id})
    wait_for(lambda: http_ok(proxy.url + "/tiles/covers/info.json"), 10, "the node behind the proxy")

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(METHOD, RAW_TARGET)
    def check(method: bytes, target: bytes) -> None:
        status = raw_status(proxy.port, method, target)
        assert 0 < status < 500, (method, target, status)  # 0: closed without an answer

    check()
    assert node.process.alive() and proxy.process.alive()
    assert "Traceback" not in proxy.process.output() + node.process.output()
