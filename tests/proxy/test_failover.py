"""What the proxy does when a backend fails: a 5xx ejects it and the request goes to the next node; a 503 (a
busy node) goes to the next without ejecting; an ejected node returns through a passing health check; and
when S3 cannot be listed, the last known backends keep serving.

The failing backend is a scripted HTTP server registered like a node (a real ``tiler serve`` cannot be made to
answer 500 on demand); the node beside it is a real one."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from proxy.routing import rank
from tests.processes import free_port, wait_for
from tests.proxy.conftest import ADDRESSES, tile_paths, write_record

A, B = ADDRESSES


class Scripted(ThreadingHTTPServer):
    """Answers /readyz 200 and everything else with ``status``; counts the tile requests it got."""

    def __init__(self, address: str, status: int):
        self.status, self.tile_requests = status, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                code = 200 if self.path == "/readyz" else server.status
                server.tile_requests += self.path.startswith("/tiles/")
                body = b"{}" if code == 200 else b"scripted failure\n"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                if code == 503:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__((address, free_port(address)), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def id(self) -> str:
        return f"{self.server_address[0]}:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def scripted():
    started: list[Scripted] = []
    yield lambda status: started.append(Scripted(B, status)) or started[-1]
    for server in started:
        server.close()


def owned_by(backend: str, ids: list[str], count: int = 8) -> list[str]:
    """Tile paths whose first choice (rendezvous hashing) is ``backend``."""
    return [p for p in tile_paths(400) if rank(p.encode(), ids)[0] == backend][:count]


def backend_row(proxy, backend: str) -> dict:
    return next(row for row in proxy.status()["backends"] if row["id"] == backend)


@pytest.mark.parametrize("status", [500, 503])
def test_a_failing_backend_costs_no_request_and_a_5xx_ejects_it_until_a_health_check(
        nodes, proxies, s3_bucket, scripted, status):
    node = nodes.start(A)
    failing = scripted(status)
    host, port = failing.server_address
    write_record(s3_bucket, host, port)
    proxy = proxies.start()
    proxy.wait_live({node.id, failing.id})
    paths = owned_by(failing.id, [node.id, failing.id])
    assert paths
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        answers = [client.get(p) for p in paths]
    assert [a.status_code for a in answers] == [200] * len(paths)  # the next node answered each
    assert failing.tile_requests >= 1
    row = backend_row(proxy, failing.id)
    if status == 503:  # a busy node stays in rotation: every request tried it first
        assert failing.tile_requests == len(paths) and row["state"] == "live", row
        assert "ejected" not in proxy.process.output()
    else:  # ejected at the first 500: the rest went straight to the next node
        assert failing.tile_requests == 1 and row["failures"] == 1, row
        assert f"backend ejected id={failing.id} reason=answered 500" in proxy.process.output()
        failing.status = 200  # repaired: its /readyz passes, it is admitted again after the hold
        proxy.wait_live({node.id, failing.id}, timeout=10)
        assert f"backend healthy id={failing.id}" in proxy.process.output()


def registered(bucket) -> int:
    return bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="proxy/").get("KeyCount", 0)


def test_when_s3_cannot_be_listed_the_last_known_backends_keep_serving(nodes, proxies, s3_bucket):
    a, b = nodes.start(A, ttl_seconds=3), nodes.start(B, ttl_seconds=3)
    proxy = proxies.start()
    proxy.wait_live({a.id, b.id})
    s3_bucket.client.delete_bucket(Bucket=s3_bucket.name)  # every LIST fails (NoSuchBucket), nobody can renew
    try:
        wait_for(lambda: proxy.status()["registry"]["error"], 10, "the proxy's LIST failing")
        time.sleep(4)  # longer than the nodes' TTL: the heartbeats the proxy holds have lapsed
        with httpx.Client(base_url=proxy.url, timeout=10) as client:
            assert {client.get(p).status_code for p in tile_paths(40)} == {200}
        assert set(proxy.live()) == {a.id, b.id} and proxy.status()["registry"]["error"]
    finally:
        s3_bucket.client.create_bucket(Bucket=s3_bucket.name)
    wait_for(lambda: not proxy.status()["registry"]["error"], 10, "the LIST working again")
    wait_for(lambda: registered(s3_bucket) == 2, 15, "both nodes registered again")
    proxy.wait_live({a.id, b.id})
