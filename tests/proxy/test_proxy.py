"""The proxy end to end: real tiler serve nodes, the SeaweedFS registry, a tile-proxy process."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time

import httpx

from proxy.cache import name_of
from proxy.entry import Entry, encode
from tests.processes import free_port, wait_for
from tests.proxy.conftest import ADDRESSES, tile_paths, write_record

A, B = ADDRESSES


def test_hit_after_miss_keeps_headers_and_answers_304(nodes, proxies):
    node = nodes.start(A)
    proxy = proxies.start()
    proxy.wait_live({node.id})
    path = tile_paths(1)[0]
    direct = httpx.get(node.url + path)
    first = httpx.get(proxy.url + path)
    second = httpx.get(proxy.url + path)
    assert (first.status_code, first.headers["x-cache"]) == (200, "MISS")
    assert (second.status_code, second.headers["x-cache"]) == (200, "HIT")
    assert first.content == second.content == direct.content
    for name in ("content-type", "cache-control", "etag", "x-tile-version"):
        assert second.headers[name] == direct.headers[name], name
    assert second.headers["cache-control"] == "public, max-age=31536000, immutable"
    served = node.tile_requests()
    again = httpx.get(proxy.url + path, headers={"If-None-Match": direct.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == direct.headers["etag"]
    head = httpx.head(proxy.url + path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(direct.content))
    assert node.tile_requests() == served  # 304 and HEAD came from the cache
    # The access log is written in batches, at least once a second; the HEAD was the last request.
    wait_for(lambda: f"method=HEAD path={path} status=200 cache=HIT" in proxy.process.output(), 5, "access log")
    log = proxy.process.output()
    assert f"method=GET path={path} status=200 cache=MISS" in log and f"backend={node.id}" in log
    assert f"method=GET path={path} status=304 cache=HIT" in log


def test_hashing_spreads_tiles_over_both_nodes(nodes, proxies):
    a, b = nodes.start(A), nodes.start(B)
    proxy = proxies.start()
    proxy.wait_live({a.id, b.id})
    before = a.tile_requests(), b.tile_requests()
    paths = tile_paths(80)
    with httpx.Client(base_url=proxy.url) as client:
        assert all(client.get(p).status_code == 200 for p in paths)
    spread = a.tile_requests() - before[0], b.tile_requests() - before[1]
    assert sum(spread) == 80 and min(spread) >= 20, spread
    shares = {row["id"]: row["hash_share"] for row in proxy.status()["backends"]}
    assert abs(shares[a.id] - 0.5) < 0.05 and abs(shares[b.id] - 0.5) < 0.05, shares
    # The same tiles again: each still goes to its owner, which now answers from the proxy cache.
    with httpx.Client(base_url=proxy.url) as client:
        assert {client.get(p).headers["x-cache"] for p in paths} == {"HIT"}
    metrics = httpx.get(proxy.url + "/metrics").text
    assert 'gigatile_proxy_requests_total{cache="HIT",status="200"} 80.0' in metrics
    assert 'gigatile_proxy_requests_total{cache="MISS",status="200"} 80.0' in metrics
    assert "gigatile_proxy_backends_live 2.0" in metrics and "process_resident_memory_bytes" in metrics
    cache = proxy.status()["cache"]
    assert (cache["hits"], cache["misses"], cache["hit_rate"]) == (80, 80, 0.5)


def test_hundred_concurrent_misses_make_one_backend_request(nodes, proxies):
    a, b = nodes.start(A), nodes.start(B)
    proxy = proxies.start()
    proxy.wait_live({a.id, b.id})
    before = a.tile_requests() + b.tile_requests()
    path = "/tiles/covers/5/7/4.png?v=1"

    async def burst():
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=proxy.url, limits=limits, timeout=30) as client:
            return await asyncio.gather(*(client.get(path) for _ in range(100)))

    answers = asyncio.run(burst())
    assert [r.status_code for r in answers] == [200] * 100
    assert len({r.content for r in answers}) == 1
    assert a.tile_requests() + b.tile_requests() - before == 1
    assert proxy.status()["cache"]["coalesced"] >= 1


def test_cache_survives_a_proxy_restart(nodes, proxies, tmp_path):
    node = nodes.start(A)
    cache_dir = tmp_path / "kept-cache"
    first = proxies.start(cache_dir=cache_dir)
    first.wait_live({node.id})
    paths = tile_paths(20, fmt="webp")
    with httpx.Client(base_url=first.url) as client:
        bodies = {p: client.get(p).content for p in paths}
    first.wait_written()
    assert first.process.stop() == 0  # SIGTERM: graceful shutdown, pending writes flushed
    assert "proxy stopped" in first.process.output()
    served = node.tile_requests()
    second = proxies.start(cache_dir=cache_dir)
    assert second.status()["cache"]["entries"] == 20
    with httpx.Client(base_url=second.url) as client:
        answers = {p: client.get(p) for p in paths}
    assert {r.headers["x-cache"] for r in answers.values()} == {"HIT"}
    assert all(answers[p].content == bodies[p] for p in paths)
    assert node.tile_requests() == served


def test_cache_size_bound_holds_under_churn(nodes, proxies):
    node = nodes.start(A)
    bound = 200 * 1024
    proxy = proxies.start("--memory-cache-size", "0", cache_size=str(bound))
    proxy.wait_live({node.id})
    paths = tile_paths(300, fmt="jpg")
    random.Random(7).shuffle(paths)

    async def churn():
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            for start in range(0, len(paths), 20):
                answers = await asyncio.gather(*(client.get(p) for p in paths[start:start + 20]))
                assert {r.status_code for r in answers} == {200}

    asyncio.run(churn())
    proxy.wait_written()
    cache = proxy.status()["cache"]
    on_disk = sum(f.stat().st_size for f in (proxy.cache_dir / "objects").rglob("*") if f.is_file())
    assert cache["evictions"] > 0 and cache["entries"] > 5, cache
    assert cache["bytes"] <= bound and on_disk <= bound, (cache, on_disk)
    assert on_disk == cache["bytes"]


def test_a_killed_node_under_load_loses_almost_no_request(nodes, proxies):
    a, b = nodes.start(A), nodes.start(B)
    proxy = proxies.start()
    proxy.wait_live({a.id, b.id})
    tiles = tile_paths(100, versioned=False)
    for node in (a, b):  # warm the nodes' own tile caches: the load measures the proxy, not rendering
        with httpx.Client(base_url=node.url) as client:
            assert {client.get(p).status_code for p in tiles} == {200}
    # 2,000 distinct URLs (each ?v= is its own cache entry): every request goes to a backend, about half
    # of them to the node that is killed.
    paths = [f"{p}?v={v}" for p in tiles for v in range(2, 22)]
    random.Random(1).shuffle(paths)
    failures, done = [], [0]

    async def load():
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            queue = iter(paths)

            async def worker():
                for path in queue:
                    try:
                        response = await client.get(path)
                        if response.status_code != 200:
                            failures.append((path, response.status_code, response.text))
                    except httpx.HTTPError as exc:
                        failures.append((path, exc))
                    done[0] += 1
                    if done[0] == 600:
                        a.process.signal(9)  # SIGKILL: no deregistration, connections cut
                    await asyncio.sleep(0.01)  # at most ~800 requests/s from 8 workers: a bounded load

            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(8))), 60)

    asyncio.run(load())
    assert done[0] == 2000
    assert len(failures) <= 2, failures[:5]  # <= 0.1 %
    proxy.wait_live({b.id}, timeout=5)
    assert proxy.status()["cache"]["misses"] == 2000


def test_no_live_backend_is_502_and_unversioned_stale_entries_are_served(s3_bucket, proxies, tmp_path):
    # A node that registered and died: its record claims /tiles/* but nothing answers there.
    dead_port = free_port("127.0.0.2")
    write_record(s3_bucket, "127.0.0.2", dead_port)
    cache_dir = tmp_path / "seeded"
    long_ago = time.time() - 3600
    for target in (b"/tiles/covers/1/0/0.jpg", b"/tiles/covers/1/1/0.jpg?v=1"):
        entry = Entry(target, [(b"content-type", b"image/jpeg"), (b"cache-control", b"public, max-age=60"),
                               (b"etag", b'"covers-v1-q85"')], b"old pixels", long_ago, long_ago + 60)
        name = name_of(target)
        (cache_dir / "objects" / name[:2]).mkdir(parents=True, exist_ok=True)
        (cache_dir / "objects" / name[:2] / name).write_bytes(encode(entry))
    viewer = tmp_path / "viewer"
    viewer.mkdir()
    (viewer / "index.html").write_text("<title>wall</title>")
    proxy = proxies.start("--viewer-dir", str(viewer), cache_dir=cache_dir)
    stale = httpx.get(proxy.url + "/tiles/covers/1/0/0.jpg")
    assert (stale.status_code, stale.headers["x-cache"], stale.content) == (200, "STALE", b"old pixels")
    versioned = httpx.get(proxy.url + "/tiles/covers/1/1/0.jpg?v=1")
    assert versioned.status_code == 502 and "no live backend" in versioned.text
    missing = httpx.get(proxy.url + "/tiles/covers/2/0/0.jpg")
    assert missing.status_code == 502 and "no live backend" in missing.text
    unclaimed = httpx.get(proxy.url + "/iiif/3/covers/info.json")
    assert unclaimed.status_code == 404 and "no backend claims" in unclaimed.text
    page = httpx.get(proxy.url + "/")
    assert page.status_code == 200 and page.text == "<title>wall</title>"
    at_node_address = httpx.get(proxy.url + "/viewer/?dataset=covers")  # the viewer's address on a render node
    assert at_node_address.status_code == 200 and at_node_address.text == "<title>wall</title>"
    assert f"listening url={proxy.url}/ viewer={proxy.url}/ " in proxy.process.output()  # says where it is


def _raw_get(port: int, target: bytes) -> int:
    """Send ``target`` byte for byte (HTTP clients normalise '..' and escapes); return the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = sock.recv(4096)
    return int(head.split(b" ", 2)[1])


def test_traversal_and_absurd_urls_are_refused_before_any_backend_or_disk(nodes, proxies, tmp_path):
    node = nodes.start(A)
    proxy = proxies.start("--viewer-dir", str(tmp_path / "no-viewer"))
    proxy.wait_live({node.id})
    served = node.tile_requests()
    bad = [b"/tiles/../../etc/passwd", b"/tiles/covers/../../../x.jpg", b"/tiles/%2e%2e/%2e%2e/etc/passwd",
           b"/tiles//covers/0/0/0.jpg", b"/tiles/covers/0/0/0.jpg%00", b"/tiles/covers\\..\\x.jpg",
           b"/tiles/covers/./0/0/0.jpg", b"/tiles/covers/0/0/0.jpg?v=%2e%2", b"/tiles/covers/0/0/0.jpg?v=1 x"[:-2]
           + b"<x>"]
    for target in bad:
        assert _raw_get(proxy.port, target) == 400, target
    assert _raw_get(proxy.port, b"/tiles/covers/" + b"a" * 5000 + b".jpg") in (400, 414)
    assert httpx.post(proxy.url + "/tiles/covers/0/0/0.jpg").status_code == 405
    missing = httpx.get(proxy.url + "/")
    assert missing.status_code == 404 and "no viewer installed" in missing.text
    assert node.tile_requests() == served
    assert not any(f.is_file() for f in (proxy.cache_dir / "objects").rglob("*"))
    assert os.listdir(proxy.cache_dir / "tmp") == []


def test_cors_on_every_answer_and_preflights_answered_here(nodes, proxies):
    """Viewers on other origins (OpenSeadragon, Mirador) read tiles and IIIF through the proxy."""
    node = nodes.start("127.0.0.2")
    proxy = proxies.start()
    proxy.wait_live({node.id})
    origin = {"Origin": "http://viewer.example"}
    for path in ("/tiles/covers/0/0/0.jpg?v=1", "/tiles/covers/0/0/0.jpg?v=1", "/tiles/covers/info.json",
                 "/iiif/3/covers/info.json", "/iiif/3/covers/full/64,/0/default.jpg", "/tiles/nope/x",
                 "/proxy/status"):
        response = httpx.get(proxy.url + path, headers=origin)
        assert response.headers["access-control-allow-origin"] == "*", (path, response.status_code)
    preflight = httpx.options(proxy.url + "/iiif/3/covers/info.json",
                              headers={**origin, "Access-Control-Request-Method": "GET",
                                       "Access-Control-Request-Headers": "if-none-match"})
    assert preflight.status_code == 204 and "GET" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "if-none-match"


def test_iiif_through_the_proxy_names_the_proxy_and_negotiates(nodes, proxies):
    node = nodes.start("127.0.0.2")
    proxy = proxies.start()
    proxy.wait_live({node.id})
    info = httpx.get(proxy.url + "/iiif/3/covers/info.json")
    assert info.json()["id"] == proxy.url + "/iiif/3/covers" and info.headers["etag"]
    assert httpx.get(node.url + "/iiif/3/covers/info.json").json()["id"] == node.url + "/iiif/3/covers"
    other = httpx.get(proxy.url + "/iiif/3/covers/info.json", headers={"Host": "wall.example"})
    assert other.json()["id"] == "http://wall.example/iiif/3/covers"
    ld = httpx.get(proxy.url + "/iiif/3/covers/info.json", headers={"Accept": "application/ld+json"})
    assert ld.headers["content-type"].startswith("application/ld+json")
    redirect = httpx.get(proxy.url + "/iiif/3/covers")
    assert redirect.status_code == 303 and redirect.headers["location"] == proxy.url + "/iiif/3/covers/info.json"
    image = httpx.get(proxy.url + "/iiif/3/covers/full/64,/0/default.jpg")
    assert image.status_code == 200 and 'rel="canonical"' in image.headers["link"]
    assert httpx.get(proxy.url + "/iiif/3/covers/full/max/45/default.jpg").status_code == 501
