"""The chaos suite's local cluster: its own SeaweedFS (so a scenario may stop it), a published covers wall, this
project released to S3, render nodes launched through ``scripts/ec2_render.sh --local`` on 127.0.0.N, and
tile-proxy in front of them. Everything is started here and stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bootstrap.node.status import pid_alive
from localcloud.seaweedfs import SeaweedS3
from tests.bootstrap.conftest import EC2_RENDER, LocalNode
from tests.conftest import S3Bucket, unique_bucket_name, without_aws_profile
from tests.processes import BIN, Process, free_port, http_ok, wait_for

DATASET = "covers"
TTL_SECONDS = 3  # the nodes' registration TTL: a lapsed heartbeat shows within seconds
POLL_SECONDS = 0.3  # tile-proxy's registry poll
HEALTH_SECONDS = 0.5  # tile-proxy's health checks (and an ejected node's hold)


def bucket_on(server: SeaweedS3, hint: str) -> S3Bucket:
    """A new bucket on ``server`` with a complete subprocess environment for it."""
    name = unique_bucket_name(hint)
    client = server.client()
    client.create_bucket(Bucket=name)
    env = {**without_aws_profile(os.environ), **server.env(), "GIGATILE_BUCKET": name}
    return S3Bucket(name=name, client=client, endpoint_url=server.endpoint_url, env=env)


def free_loopback(first: int = 2) -> tuple[str, int]:
    """A 127.0.0.N (N >= ``first``) and a port free on it: the launcher's ``--address 127.0.0.N``."""
    for n in range(first, 255):
        address = f"127.0.0.{n}"
        try:
            return address, free_port(address)
        except OSError:
            continue
    raise AssertionError("no free 127.0.0.N address")


def launch(root: Path, bucket: S3Bucket, address: str, port: int, env: dict[str, str] | None = None,
           *extra: str) -> LocalNode:
    """``scripts/ec2_render.sh --local`` for ``bucket`` at address:port (quick polls and heartbeats)."""
    done = subprocess.run([str(EC2_RENDER), "--local", "--json", "--bucket", bucket.name, "--root", str(root),
                           "--address", address, "--port", str(port), "--sync-interval", "0.3", "--ttl-seconds",
                           str(TTL_SECONDS), "--workers", "1", *extra], capture_output=True, text=True, timeout=90,
                          env={**bucket.env, **(env or {})})
    assert done.returncode == 0, done.stderr
    return LocalNode(root, address, port, bucket, json.loads(done.stdout.strip().splitlines()[-1]))


def sigkill(pids: list[int]) -> list[int]:
    """SIGKILL each pid still alive (an instance lost at once); the ones killed."""
    killed = []
    for pid in pids:
        if pid and pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


@dataclass
class Proxy:
    port: int
    cache_dir: Path
    log_dir: Path
    bucket: S3Bucket
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """``tile-proxy run`` on its port and cache (a restart keeps both), returned once /healthz answers."""
        args = [str(BIN / "tile-proxy"), "run", "--bucket", self.bucket.name, "--host", "127.0.0.1", "--port",
                str(self.port), "--allow-net", "127.0.0.0/8", "--poll-seconds", str(POLL_SECONDS),
                "--health-seconds", str(HEALTH_SECONDS), "--cache-dir", str(self.cache_dir), "--cache-size", "64M",
                "--access-log", "off"]
        self.process = Process(args, self.log_dir / "proxy.log", self.bucket.env)
        try:
            wait_for(lambda: self.process.alive() and http_ok(self.url + "/healthz"), 30, "tile-proxy")
        except AssertionError:
            self.process.stop()
            raise AssertionError(f"tile-proxy did not start:\n{self.process.output()[-3000:]}") from None

    def status(self) -> dict:
        return httpx.get(self.url + "/proxy/status", timeout=5).json()

    def live(self) -> set[str]:
        try:
            return set(self.status()["live"])
        except (httpx.HTTPError, ValueError, KeyError):
            return set()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class Cluster:
    work: Path
    server: SeaweedS3
    bucket: S3Bucket
    wall: Path
    proxy: Proxy
    nodes: list[LocalNode] = field(default_factory=list)

    def node_ids(self, nodes: list[LocalNode] | None = None) -> set[str]:
        return {f"{n.address}:{n.port}" for n in (self.nodes if nodes is None else nodes)}

    def launch_node(self, name: str, env: dict[str, str] | None = None, *extra: str) -> LocalNode:
        """A new node in ``work/<name>`` on the next free 127.0.0.N, returned once it is registered."""
        taken = {n.address for n in self.nodes}
        first = 2
        while f"127.0.0.{first}" in taken:
            first += 1
        address, port = free_loopback(first)
        node = launch(self.work / name, self.bucket, address, port, env, *extra)
        wait_for(lambda: node.registration() is not None or not pid_alive(node.record["node_pid"]), 120,
                 f"node {name} registered")
        assert node.registration() is not None, node.logs()
        return node

    def relaunch(self, node: LocalNode, env: dict[str, str] | None = None) -> LocalNode:
        """The same root, address and port launched again (the instance rebooted); replaces it in ``nodes``."""
        again = launch(node.root, self.bucket, node.address, node.port, env)
        self.nodes[self.nodes.index(node)] = again
        return again

    def healthy(self) -> bool:
        """Every node of ``nodes`` live behind the proxy."""
        return self.proxy.live() == self.node_ids()

    def wait_healthy(self, timeout: float = 60) -> None:
        wait_for(self.healthy, timeout, f"tile-proxy with {sorted(self.node_ids())} live")

    def stop_node(self, node: LocalNode) -> None:
        """A clean stop (``--stop``), or SIGKILL of whatever is left of it."""
        if any(pid_alive(p) for p in node.pids()):
            done = node.stop()
            if done.returncode != 0:
                sigkill(node.pids())

    def stop(self) -> None:
        self.proxy.stop()
        for node in self.nodes:
            self.stop_node(node)
        self.server.stop()
