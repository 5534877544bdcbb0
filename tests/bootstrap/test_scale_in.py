"""A scale-in of a local fleet under load: three nodes (scripts/ec2_render.sh --local) behind tile-proxy, one
leaves as an Auto Scaling scale-in makes it leave (target-lifecycle-state = Terminated), and no request
fails."""

from __future__ import annotations

import math
import random
import subprocess
import threading
import time

import httpx

from tests.bootstrap.conftest import EC2_RENDER, launch_node, publish_wall
from tests.processes import BIN, Process, free_port, http_ok, wait_for

LOAD_SECONDS = 30.0   # the load stops by itself after this long (or at MAX_REQUESTS)
MAX_REQUESTS = 20_000


def tile_urls(info: dict) -> list[str]:
    """Every tile of the small wall's three deepest levels."""
    width, height = info["width"], info["height"]
    top = max(0, math.ceil(math.log2(max(width, height) / 256)))
    urls = []
    for z in range(max(0, top - 2), top + 1):
        scale = 2 ** (top - z)
        cols, rows = math.ceil(width / scale / 256), math.ceil(height / scale / 256)
        urls += [f"/tiles/covers/{z}/{x}/{y}.jpg" for x in range(cols) for y in range(rows)]
    return urls


class Load(threading.Thread):
    """Sequential GETs through the proxy, each a miss (a fresh ?v=), so every one reaches a node."""

    def __init__(self, base: str, urls: list[str], seed: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.base, self.urls, self.rng, self.stop = base, urls, random.Random(seed), stop
        self.ok = 0
        self.failed: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_SECONDS
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self.stop.is_set() and time.monotonic() < deadline and self.ok < MAX_REQUESTS:
                url = f"{self.rng.choice(self.urls)}?v={self.rng.randrange(10**9)}"
                try:
                    response = client.get(url)
                except httpx.HTTPError as exc:
                    self.failed.append(f"{url}: {exc!r}")
                    continue
                if response.status_code == 200:
                    self.ok += 1
                else:
                    self.failed.append(f"{url}: {response.status_code} {response.text.strip()}")


def test_a_node_scaled_in_under_load_costs_no_request(s3_bucket, released_with_kernels, small_wall, nodes,
                                                       tmp_path):
    publish_wall(small_wall, s3_bucket)
    for i in range(3):
        nodes.append(launch_node(tmp_path / f"node-{i}", s3_bucket, "--workers", "1"))
    for node in nodes:
        wait_for(lambda n=node: n.registration() is not None, 120, f"node {node.address} registered")
    port = free_port()
    proxy = Process([str(BIN / "tile-proxy"), "run", "--bucket", s3_bucket.name, "--port", str(port),
                     "--poll-seconds", "0.5", "--health-seconds", "0.5", "--cache-dir", str(tmp_path / "cache"),
                     "--access-log", "off"], tmp_path / "proxy.log", s3_bucket.env)
    base = f"http://127.0.0.1:{port}"
    try:
        ids = {f"{n.address}:{n.port}" for n in nodes}
        wait_for(lambda: http_ok(base + "/healthz") and set(httpx.get(base + "/proxy/status").json()["live"]) == ids,
                 60, "tile-proxy with the three nodes live")
        urls = tile_urls(httpx.get(base + "/tiles/covers/info.json").json())
        stop = threading.Event()
        loads = [Load(base, urls, seed, stop) for seed in range(4)]
        for load in loads:
            load.start()
        wait_for(lambda: sum(load.ok for load in loads) >= 200, 30, "load flowing through every node")
        leaving = nodes[0]
        sent = {row["id"]: row["requests"] for row in httpx.get(base + "/proxy/status").json()["backends"]}
        assert all(sent[i] > 0 for i in ids), sent  # the leaving node is taking its share
        done = subprocess.run([str(EC2_RENDER), "--local", "--scale-in", str(leaving.root)], capture_output=True,
                              text=True, timeout=90, env=s3_bucket.env)
        assert done.returncode == 0, done.stderr
        assert leaving.registration() is None  # the render server deleted its record on the way out
        remaining = ids - {f"{leaving.address}:{leaving.port}"}
        wait_for(lambda: set(httpx.get(base + "/proxy/status").json()["live"]) == remaining, 10, "two nodes live")
        served_after = sum(load.ok for load in loads)
        wait_for(lambda: sum(load.ok for load in loads) >= served_after + 200, 30, "load on the two others")
        stop.set()
        for load in loads:
            load.join(10)
        failed = [f for load in loads for f in load.failed]
        assert failed == [], failed[:10]
        assert sum(load.ok for load in loads) >= 400
        assert "leaving the Auto Scaling group" in leaving.logs()
    finally:
        proxy.stop()
