"""Fixtures of the bootstrap tests: a moto EC2 server, a release of this project's wheel (built once, in
tests/conftest.py) in the test bucket, a small published wall, and local nodes launched with scripts/ec2_render.sh."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootstrap.launch.imds_emulator import ImdsServer, InstanceMetadata
from bootstrap.node.status import pid_alive, read_status
from bootstrap.node.userdata import NodeConfig, render_user_data
from bootstrap.release.publisher import Released, publish_release
from gigaformat.layout import NodeLayout
from tests.processes import BIN, Process, free_port, http_ok, wait_for
from tiler.generate import generate_wall
from tiler.publish import publish

REPO = Path(__file__).resolve().parents[2]
EC2_RENDER = REPO / "scripts" / "ec2_render.sh"
DATASET = "covers"


# --- EC2: a moto server per session ------------------------------------------------------------------------


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str
    env: dict[str, str]  # for boto3 in a subprocess or via monkeypatch


@pytest.fixture(scope="session")
def moto_ec2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = Process([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: not server.alive() or http_ok(f"{url}/moto-api/data.json"), 30, "moto_server")
        assert server.alive(), server.output()[-2000:]
        env = {"AWS_ENDPOINT_URL_EC2": url, "AWS_ENDPOINT_URL_IAM": url, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        yield MotoServer(url, env)
    finally:
        server.stop()


# --- releases ----------------------------------------------------------------------------------------------


@pytest.fixture
def released(s3_bucket, project_wheel: Path) -> Released:
    """The project released on channel ``current`` of the test bucket (wheel, bootstrap, pointer), without
    compiled kernels."""
    return publish_release(s3_bucket.client, s3_bucket.name, REPO, wheel=project_wheel)


@pytest.fixture
def released_with_kernels(s3_bucket, project_wheel: Path, project_kernels: Path) -> Released:
    """The project released as ``node-bootstrap release`` does by default: with kernels for this CPU."""
    return publish_release(s3_bucket.client, s3_bucket.name, REPO, wheel=project_wheel, kernels=project_kernels)


# --- a small wall ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def small_wall(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bootstrap-wall") / "wall"
    generate_wall(out, gigapixels=0.01, unique=12, seed=5)
    return out


def publish_wall(wall: Path, bucket) -> int:
    return publish(wall, DATASET, bucket.name, bucket.client).generation


# --- nodes ------------------------------------------------------------------------------------------------


def update_node(bucket, root: Path, newer_keys: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """``node-bootstrap update`` (up to the installed release, no children) for ``bucket``, its IMDS served
    from this process; returns the run and the node's status document. ``newer_keys`` are added to the
    user-data as a newer bootstrap would write them."""
    config = NodeConfig(bucket=bucket.name, root=str(root), s3_endpoint_url=bucket.endpoint_url)
    user_data = (json.dumps({**config.to_document(), **newer_keys}) if newer_keys else render_user_data(config))
    metadata = InstanceMetadata("i-0update", "127.0.0.1", user_data.encode())
    with ImdsServer(metadata) as imds:
        done = subprocess.run([sys.executable, "-m", "bootstrap.cli", "update"], capture_output=True, text=True,
                              timeout=120, cwd=root.parent,
                              env={**bucket.env, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url})
    return done, read_status(NodeLayout(root).status_path) or {}


# --- local nodes -------------------------------------------------------------------------------------------


def loopback_address() -> str:
    """A random 127.x.y.z (all of 127/8 is loopback on Linux): no clash with other tests' nodes."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 254)}.{random.randint(2, 254)}"


@dataclass
class LocalNode:
    root: Path
    address: str
    port: int
    bucket: object
    record: dict

    @property
    def layout(self) -> NodeLayout:
        return NodeLayout(self.root)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def key(self) -> str:
        return f"proxy/{self.address}.p{self.port}"

    def status(self) -> dict:
        return read_status(self.layout.status_path) or {}

    def child(self, name: str) -> dict:
        return next((c for c in self.status().get("children", []) if c["name"] == name), {})

    def logs(self) -> str:
        parts = []
        for path in [Path(self.record.get("node_log", "")), *sorted(self.layout.log_dir.glob("*.log"))]:
            if path.is_file():
                parts.append(f"==== {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def registration(self) -> dict | None:
        try:
            body = self.bucket.client.get_object(Bucket=self.bucket.name, Key=self.key)["Body"].read()
        except self.bucket.client.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def stop(self) -> subprocess.CompletedProcess:
        return subprocess.run([str(EC2_RENDER), "--local", "--stop", str(self.root)], capture_output=True,
                              text=True, timeout=60, env=self.bucket.env)

    def pids(self) -> list[int]:
        """node-bootstrap, its IMDS emulator and the children it last reported."""
        found = [self.record["node_pid"], self.record["imds_pid"]]
        return found + [c["pid"] for c in self.status().get("children", []) if c.get("pid")]

    def wait_running(self, timeout: float = 60) -> None:
        def up() -> bool:
            if not pid_alive(self.record["node_pid"]):
                raise AssertionError(f"node-bootstrap exited:\n{self.logs()}")
            return self.status().get("state") == "running" and http_ok(f"{self.url}/healthz")

        try:
            wait_for(up, timeout, "the node's render server")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None


def launch_node(root: Path, bucket, *extra: str, warmup: bool = False) -> LocalNode:
    """``scripts/ec2_render.sh --local`` for ``bucket`` (S3 endpoint from its environment), on a random
    loopback address; quick polls and heartbeats; without the kernel warm-up unless asked (it costs CPU)."""
    address = loopback_address()
    port = free_port(address)
    done = subprocess.run([str(EC2_RENDER), "--local", "--json", "--bucket", bucket.name, "--root", str(root),
                           "--address", address, "--port", str(port), "--sync-interval", "0.3", "--ttl-seconds",
                           "3", *([] if warmup else ["--no-warmup"]), *extra], capture_output=True, text=True,
                          timeout=60, env=bucket.env)
    assert done.returncode == 0, done.stderr
    return LocalNode(root, address, port, bucket, json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture
def nodes() -> Iterator[list[LocalNode]]:
    """Local nodes a test launched; whatever is still running afterwards is stopped by PID."""
    launched: list[LocalNode] = []
    yield launched
    for node in launched:
        if any(pid_alive(p) for p in node.pids()):
            node.stop()
