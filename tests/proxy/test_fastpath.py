"""Memory hits answered inside the HTTP protocol (proxy/fastpath.py) are the same answers as the ordinary
path's, in order on a pipelined connection, and counted and logged like any hit."""

from __future__ import annotations

import re
import socket

import httpx

from tests.processes import wait_for
from tests.proxy.conftest import ADDRESSES, tile_paths

A = ADDRESSES[0]


def exchange(port: int, raw: bytes, responses: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Send ``raw`` at once on one connection and read ``responses`` answers (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        answers = []
        while len(answers) < responses:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                assert chunk, f"connection closed after {len(answers)} answers"
                data += chunk
            head, data = data.split(b"\r\n\r\n", 1)
            status, *lines = head.split(b"\r\n")
            headers = {name.lower(): value for name, value in (line.split(b": ", 1) for line in lines)}
            length = int(headers.get(b"content-length", b"0"))
            if raw.split(b"\r\n\r\n")[len(answers)].startswith(b"HEAD"):
                length = 0
            while len(data) < length:
                chunk = sock.recv(65536)
                assert chunk
                data += chunk
            answers.append((status, headers, data[:length]))
            data = data[length:]
        return answers


def get(path: str, extra: str = "", method: str = "GET", version: str = "1.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: proxy\r\n{extra}\r\n".encode()


def test_memory_hits_answer_as_the_ordinary_path_does(nodes, proxies, tmp_path):
    node = nodes.start(A)
    log = tmp_path / "access.log"
    fast = proxies.start("--access-log", str(log))
    plain = proxies.start("--memory-cache-size", "0")  # no memory LRU: every hit is a disk hit, ordinary path
    for proxy in (fast, plain):
        proxy.wait_live({node.id})
    paths = tile_paths(3)
    for proxy in (fast, plain):
        with httpx.Client(base_url=proxy.url) as client:
            assert [client.get(p).headers["x-cache"] for p in paths] == ["MISS"] * 3
        proxy.wait_written()

    fast_answers = exchange(fast.port, b"".join(get(p) for p in paths), 3)
    plain_answers = exchange(plain.port, b"".join(get(p) for p in paths), 3)
    for (status, headers, body), (status2, headers2, body2) in zip(fast_answers, plain_answers, strict=True):
        assert status == status2 == b"HTTP/1.1 200 OK"
        assert body == body2 and len(body) == int(headers[b"content-length"])
        headers.pop(b"date"), headers2.pop(b"date")
        assert headers == headers2 and headers[b"x-cache"] == b"HIT"

    # HEAD, a conditional request (ordinary path: 304), a miss and a hit, pipelined on one connection
    etag = fast_answers[0][1][b"etag"].decode()
    unseen = tile_paths(4)[3]
    answers = exchange(fast.port, get(paths[0], method="HEAD") + get(paths[0], f"If-None-Match: {etag}\r\n")
                       + get(unseen) + get(paths[1]), 4)
    assert [a[0].split(b" ")[1] for a in answers] == [b"200", b"304", b"200", b"200"]
    assert answers[0][2] == b"" and int(answers[0][1][b"content-length"]) == len(fast_answers[0][2])
    assert [a[1][b"x-cache"] for a in answers] == [b"HIT", b"HIT", b"MISS", b"HIT"]
    assert answers[3][2] == fast_answers[1][2]

    # HTTP/1.0 (no keep-alive): answered, then closed
    with socket.create_connection(("127.0.0.1", fast.port), timeout=10) as sock:
        sock.sendall(get(paths[2], version="1.0"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in data.lower()
    assert data.endswith(fast_answers[2][2])

    wait_for(lambda: len(re.findall(r"status=200 cache=HIT", log.read_text())) >= 6, 10, "hits in the access log")
    status = fast.status()["cache"]
    assert status["hits"] >= 6 and status["misses"] == 4
    metrics = httpx.get(fast.url + "/metrics").text
    assert re.search(r'gigatile_proxy_requests_total\{cache="HIT",status="200"\} ([0-9.]+)', metrics)
