"""A rolling switch seen through tile-proxy: a tile asked for by a version its owner has not switched to yet is
answered by the next node if that one has it (the owner's older answer is kept only as a last resort); an older
``v`` is answered by the owner alone.

Both backends are scripted HTTP servers registered like nodes, each answering every tile with a fixed
``X-Tile-Version`` and body (two real nodes a generation apart would need two publishes of the wall)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from proxy.routing import rank
from tests.processes import free_port
from tests.proxy.conftest import ADDRESSES, tile_paths, write_record


class AtVersion(ThreadingHTTPServer):
    """A backend whose every tile is at ``version``, answered as a node answers (no-store when the URL asks
    for a newer one); counts the tile requests it got."""

    def __init__(self, address: str, version: int):
        self.version, self.tile_requests = version, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                body = b"{}" if self.path == "/readyz" else f"pixels of version {server.version}".encode()
                self.send_response(200)
                if self.path.startswith("/tiles/"):
                    server.tile_requests += 1
                    asked = int(self.path.rsplit("v=", 1)[1])
                    self.send_header("X-Tile-Version", str(server.version))
                    self.send_header("Cache-Control", "public, max-age=31536000, immutable"
                                     if asked == server.version else
                                     "no-store" if asked > server.version else "public, max-age=60")
                    self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__((address, free_port(address)), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def id(self) -> str:
        return f"{self.server_address[0]}:{self.server_address[1]}"


@pytest.fixture
def backends(s3_bucket):
    behind, switched = AtVersion(ADDRESSES[0], 1), AtVersion(ADDRESSES[1], 2)
    for server in (behind, switched):
        write_record(s3_bucket, *server.server_address)
    yield behind, switched
    for server in (behind, switched):
        server.shutdown()
        server.server_close()


def owned(owner: str, ids: list[str], version: int, count: int = 6) -> list[str]:
    return [p.replace("?v=1", f"?v={version}") for p in tile_paths(300) if rank(
        p.replace("?v=1", f"?v={version}").encode(), ids)[0] == owner][:count]


def test_a_tile_newer_than_its_owner_is_answered_by_the_node_that_has_it(backends, proxies):
    behind, switched = backends
    proxy = proxies.start()
    proxy.wait_live({behind.id, switched.id})
    ids = [behind.id, switched.id]
    newer = owned(behind.id, ids, 2)
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        answers = [client.get(p) for p in newer]
        again = [client.get(p) for p in newer]  # kept by the proxy: the answer the URL names
    assert {a.text for a in answers} == {"pixels of version 2"}
    assert {a.headers["x-tile-version"] for a in answers} == {"2"}
    assert all("immutable" in a.headers["cache-control"] for a in answers)
    assert behind.tile_requests == len(newer) and switched.tile_requests == len(newer)
    assert {a.headers["x-cache"] for a in again} == {"HIT"}


def test_an_older_version_is_answered_by_its_owner_alone(backends, proxies):
    behind, switched = backends
    proxy = proxies.start()
    proxy.wait_live({behind.id, switched.id})
    older = owned(switched.id, [behind.id, switched.id], 1)
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        answers = [client.get(p) for p in older]
    assert {a.text for a in answers} == {"pixels of version 2"} and behind.tile_requests == 0


def test_when_no_node_has_the_version_the_owners_answer_is_served_and_not_kept(backends, proxies):
    behind, switched = backends
    proxy = proxies.start()
    proxy.wait_live({behind.id, switched.id})
    ahead = owned(behind.id, [behind.id, switched.id], 3, count=3)
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        answers = [client.get(p) for p in ahead]
        again = [client.get(p) for p in ahead]
    assert {a.status_code for a in answers + again} == {200}
    assert {a.headers["cache-control"] for a in answers} == {"no-store"}
    assert {a.headers["x-cache"] for a in again} == {"MISS"}  # a no-store answer is never kept
    assert behind.tile_requests + switched.tile_requests == 4 * len(ahead)  # two backends a request, no more
