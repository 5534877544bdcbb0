"""Fixtures of the proxy tests: real ``tiler serve`` nodes on 127.0.0.2 and 127.0.0.3 registered in the
SeaweedFS bucket (``s3_bucket`` from tests/conftest.py), and ``tile-proxy run`` processes in front of them.

Every process is stopped by PID at teardown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from gigaformat.clock import iso
from gigaformat.layout import DatasetDir
from gigaformat.registration import Registration
from tests.processes import BIN, Process, free_port, http_ok, start_tiler_serve, wait_for
from tiler.generate import generate_wall
from tiler.local_publish import publish_local

ADDRESSES = ("127.0.0.2", "127.0.0.3")
ALLOW_NET = "127.0.0.2/31"  # exactly the two node addresses: 127.0.0.4 and beyond are "outside"
_REQUESTS = re.compile(r'^gigatile_requests_total\{route="tiles",status="(\d+)"\} ([0-9.e+]+)$', re.MULTILINE)


@pytest.fixture(scope="session")
def node_roots(tmp_path_factory) -> dict[str, Path]:
    """A node root per address holding a small covers wall (8704 x 5745 px, 7 levels)."""
    base = tmp_path_factory.mktemp("proxy-nodes")
    generate_wall(base / "wall", 0.05)
    roots = {}
    for address in ADDRESSES:
        roots[address] = base / address
        publish_local(base / "wall", DatasetDir(roots[address], "covers"))
    return roots


@dataclass
class Node:
    address: str
    port: int
    process: Process

    @property
    def id(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.id}"

    def tile_requests(self) -> int:
        """How many /tiles/ requests this node has answered (its own Prometheus counter)."""
        text = httpx.get(self.url + "/metrics", timeout=5).text
        return int(sum(float(count) for _, count in _REQUESTS.findall(text)))


class Nodes:
    def __init__(self, roots: dict[str, Path], bucket, tmp_path: Path):
        self.roots, self.bucket, self.tmp_path = roots, bucket, tmp_path
        self.started: list[Node] = []

    def start(self, address: str, ttl_seconds: int = 30, register: bool = True) -> Node:
        """``tiler serve`` on ``address``; with ``register`` it writes its own record in the bucket."""
        port = free_port(address)
        extra = ["--workers", "1", "--bucket", self.bucket.name if register else ""]  # "" beats GIGATILE_BUCKET
        if register:
            extra += ["--advertise", address, "--ttl-seconds", str(ttl_seconds)]
        log = self.tmp_path / f"node-{address}-{port}.log"
        process = start_tiler_serve(self.roots[address], "covers", address, port, log, *extra, env=self.bucket.env)
        node = Node(address, port, process)
        self.started.append(node)
        wait_for(lambda: http_ok(node.url + "/readyz"), 30, f"node {node.id} ready")
        return node

    def stop_all(self) -> None:
        for node in self.started:
            node.process.stop()


@pytest.fixture
def nodes(node_roots, s3_bucket, tmp_path):
    started = Nodes(node_roots, s3_bucket, tmp_path)
    yield started
    started.stop_all()


def write_record(bucket, address: str, port: int, ttl_seconds: int = 30, **fields) -> str:
    """A registration record written by hand (as a node would), heartbeat now; returns its key."""
    now = iso(datetime.now(UTC))
    record = Registration(address=address, port=port, started=now, heartbeat=now, ttl_seconds=ttl_seconds,
                          datasets={"covers": 1}, **fields)
    bucket.client.put_object(Bucket=bucket.name, Key=record.key, Body=record.to_bytes())
    return record.key


@dataclass
class Proxy:
    port: int
    process: Process
    cache_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict:
        return httpx.get(self.url + "/proxy/status", timeout=5).json()

    def live(self) -> list[str]:
        return self.status()["live"]

    def records(self) -> set[str]:
        """Keys of the admitted records (live, unhealthy or stale; not the ignored ones)."""
        return {row["key"] for row in self.status()["backends"] if row["state"] != "ignored"}

    def wait_live(self, expected: set[str], timeout: float = 15) -> None:
        wait_for(lambda: set(self.live()) == expected, timeout, f"live backends == {sorted(expected)}")

    def wait_written(self, timeout: float = 10) -> None:
        """Until the disk cache has no write in flight."""
        wait_for(lambda: self.status()["cache"]["pending_writes"] == 0, timeout, "cache writes done")


class Proxies:
    def __init__(self, bucket, tmp_path: Path):
        self.bucket, self.tmp_path = bucket, tmp_path
        self.started: list[Proxy] = []

    def start(self, *extra: str, cache_dir: Path | None = None, cache_size: str = "64M") -> Proxy:
        """``tile-proxy run`` on 127.0.0.1 (fast polls for tests); returned once /healthz answers."""
        cache_dir = cache_dir or self.tmp_path / f"cache-{len(self.started)}"
        port = free_port()
        args = [str(BIN / "tile-proxy"), "run", "--bucket", self.bucket.name, "--host", "127.0.0.1",
                "--port", str(port), "--allow-net", ALLOW_NET, "--poll-seconds", "0.3", "--health-seconds", "0.5",
                "--cache-dir", str(cache_dir), "--cache-size", cache_size, *extra]
        process = Process(args, self.tmp_path / f"proxy-{port}.log", self.bucket.env)
        proxy = Proxy(port, process, cache_dir)
        self.started.append(proxy)
        try:
            wait_for(lambda: process.alive() and http_ok(proxy.url + "/healthz"), 30, "tile-proxy")
        except AssertionError:
            process.stop()
            raise AssertionError(f"tile-proxy did not start:\n{process.output()[-3000:]}") from None
        return proxy

    def stop_all(self) -> None:
        for proxy in self.started:
            proxy.process.stop()


@pytest.fixture
def proxies(s3_bucket, tmp_path):
    started = Proxies(s3_bucket, tmp_path)
    yield started
    started.stop_all()


def tile_paths(count: int, fmt: str = "jpg", versioned: bool = True, level: int = 6) -> list[str]:
    """``count`` distinct tile URLs of the test wall (level 6 has 34 x 23 tiles), versioned ``?v=1``."""
    cols, rows = 34, 23
    assert count <= cols * rows
    query = "?v=1" if versioned else ""
    return [f"/tiles/covers/{level}/{i % cols}/{i // cols}.{fmt}{query}" for i in range(count)]


def dump(obj) -> str:
    return json.dumps(obj, indent=1)
