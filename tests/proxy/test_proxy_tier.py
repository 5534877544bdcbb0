"""Several tile-proxies in front of the same nodes: from the same registry they agree on which node owns each
URL (rendezvous hashing) and serve the same bytes."""

from __future__ import annotations

import re

import httpx

from tests.processes import wait_for
from tests.proxy.conftest import ADDRESSES, tile_paths

A, B = ADDRESSES
_LINE = re.compile(r"path=(\S+) status=200 cache=MISS bytes=\d+ ms=[0-9.]+ backend=(\S+)")


def owners(log_text: str) -> dict[str, str]:
    return dict(_LINE.findall(log_text))


def test_two_proxies_agree_on_ownership_and_serve_the_same_bytes(nodes, proxies, tmp_path):
    a, b = nodes.start(A), nodes.start(B)
    logs = [tmp_path / "access-0.log", tmp_path / "access-1.log"]
    first, second = (proxies.start("--access-log", str(log)) for log in logs)
    for proxy in (first, second):
        proxy.wait_live({a.id, b.id})
    shares = [{row["id"]: row["hash_share"] for row in p.status()["backends"]} for p in (first, second)]
    assert shares[0] == shares[1] and 0.3 < shares[0][a.id] < 0.7

    paths = tile_paths(120)
    bodies = []
    for proxy in (first, second):
        with httpx.Client(base_url=proxy.url, timeout=30) as client:
            answers = [client.get(path) for path in paths]
        assert {r.status_code for r in answers} == {200}
        assert {r.headers["x-cache"] for r in answers} == {"MISS"}  # each proxy asked a node itself
        bodies.append([r.content for r in answers])
    assert bodies[0] == bodies[1]

    wait_for(lambda: all(len(owners(log.read_text())) == len(paths) for log in logs), 10, "both access logs")
    seen = [owners(log.read_text()) for log in logs]
    assert seen[0] == seen[1]  # every URL went to the same node from either proxy
    assert set(seen[0].values()) == {a.id, b.id}
