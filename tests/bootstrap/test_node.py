"""Whole local nodes (scripts/ec2_render.sh --local): replication, registration, supervision, updates."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bootstrap.node.status import pid_alive
from bootstrap.pointers import ReleasePointer
from bootstrap.s3io import put_json
from gigaformat.layout import DatasetDir
from gigaformat.registration import Registration
from tests.bootstrap.conftest import DATASET, launch_node, publish_wall, update_node
from tests.processes import http_ok, wait_for
from tiler.dataset import LoadedDataset
from tiler.local_publish import publish_local


def png_pixels(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def wait_or_show(node, condition, timeout: float, what: str) -> None:
    try:
        wait_for(condition, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{node.logs()}") from None


def test_a_local_launch_replicates_the_wall_and_serves_correct_tiles_at_its_registered_address(
        s3_bucket, released_with_kernels, small_wall, nodes, tmp_path):
    released = released_with_kernels  # as `node-bootstrap release` makes it: kernels compiled for this CPU
    publish_wall(small_wall, s3_bucket)
    node = launch_node(tmp_path / "node", s3_bucket, warmup=True)  # the default user-data
    nodes.append(node)

    wait_or_show(node, lambda: node.registration() is not None, 90, "the node's registration")
    record = node.registration()
    assert (record["address"], record["port"], record["datasets"]) == (node.address, node.port, {DATASET: 1})
    assert record["instance_id"] == node.record["instance_id"] and record["routes"] == ["/tiles/*", "/iiif/*"]

    assert node.status()["kernels"] == "release" and (node.layout.current.resolve() / ".warmed").is_file()
    assert "warmup" not in node.status()["phases"]  # nothing left to compile
    reference_folder = DatasetDir(tmp_path / "reference", DATASET)
    publish_local(small_wall, reference_folder)
    reference = LoadedDataset.open(reference_folder)
    top = reference.geometry.top
    base = f"http://{record['address']}:{record['port']}/tiles/{DATASET}"
    with httpx.Client(timeout=60) as client:  # one connection, one worker: the render core compiles once
        for z, x, y in [(top, 1, 1), (top - 2, 0, 1), (0, 0, 0)]:
            response = client.get(f"{base}/{z}/{x}/{y}.png")
            assert response.status_code == 200, response.text
            assert np.array_equal(png_pixels(response.content), reference.render_tile(z, x, y)), (z, x, y)

    status = node.status()
    assert status["release"] == released.pointer.version and status["state"] == "running"
    assert set(status["phases"]) >= {"identity", "self_update", "update", "children"}
    assert {c["name"]: c["state"] for c in status["children"]} == {"render": "running", "boxlink": "running"}
    assert {"bootstrap.log", "render.console.log", "boxlink.log"} <= {p.name for p in node.layout.log_dir.iterdir()}

    killed = node.child("render")["pid"]
    os.kill(killed, signal.SIGKILL)  # uvicorn's workers are left holding the port: the supervisor must end them
    wait_or_show(node, lambda: node.child("render").get("restarts") == 1 and http_ok(f"{node.url}/readyz"), 60,
                 "the render server to be restarted")
    assert node.child("render")["pid"] != killed and node.child("render")["last_exit"]["code"] == -signal.SIGKILL
    again = httpx.get(f"{base}/{top}/1/1.png", timeout=60)
    assert again.status_code == 200 and np.array_equal(png_pixels(again.content), reference.render_tile(top, 1, 1))

    pids = node.pids()
    done = node.stop()
    assert done.returncode == 0, done.stderr
    assert node.registration() is None
    assert not [p for p in pids if pid_alive(p)]


def test_registration_appears_only_after_the_data_is_down_and_goes_with_a_clean_stop(
        s3_bucket, released, small_wall, nodes, tmp_path):
    node = launch_node(tmp_path / "node", s3_bucket)  # nothing published yet
    nodes.append(node)
    folder = DatasetDir(node.root, DATASET)
    node.wait_running()
    # the status command it printed runs as printed, from anywhere, without the venv on PATH
    shown = subprocess.run(node.record["status_command"], shell=True, cwd=tmp_path, capture_output=True,
                           text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert shown.returncode == 0 and "render" in shown.stdout, shown.stderr
    wait_or_show(node, folder.is_active, 30, "the node to ask for its data (synch.active)")
    quiet_until = time.monotonic() + 1.5  # several registration attempts (every 0.5 s until registered)
    while time.monotonic() < quiet_until:
        assert node.registration() is None, "registered without data"
        time.sleep(0.1)

    publish_wall(small_wall, s3_bucket)
    deadline = time.monotonic() + 60
    while (record := node.registration()) is None:
        assert folder.down_generation() is None or folder.down_generation() == 1
        assert time.monotonic() < deadline, f"no registration\n{node.logs()}"
        time.sleep(0.05)
    down = folder.down_generation()  # read after the record was seen: it must already have been there
    assert down == 1 and record["datasets"] == {DATASET: 1}

    first = record["heartbeat"]
    wait_or_show(node, lambda: (node.registration() or {}).get("heartbeat", "") > first, 10, "a newer heartbeat")
    assert Registration.from_bytes(
        s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=node.key)["Body"].read()).is_fresh(datetime.now(UTC))

    render = node.child("render")["pid"]
    done = node.stop()
    assert done.returncode == 0, done.stderr
    assert node.registration() is None and not pid_alive(render)
    status = node.status()
    assert status["state"] == "stopped"
    assert {c["name"]: c["last_exit"]["code"] for c in status["children"]} == {"render": 0, "boxlink": 0}
    assert done.stdout.startswith("stopped node ")
    again = node.stop()  # nothing left to stop: says so, does not claim to have stopped it again
    assert again.returncode == 0 and "was already stopped" in again.stdout and "stopped node" not in again.stdout


def test_a_bundle_with_a_wrong_sha256_is_refused_and_the_previous_release_keeps_running(
        s3_bucket, released, project_wheel, nodes, tmp_path):
    root = tmp_path / "node"
    first, _ = update_node(s3_bucket, root)  # the node's first boot installed the release
    assert first.returncode == 0, first.stderr
    version = released.pointer.version + "-b"  # the next release, announced with a wrong sha256
    key = f"releases/{version}/{project_wheel.name}"
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=project_wheel.read_bytes())
    wrong = ReleasePointer(version, key, hashlib.sha256(b"not the wheel").hexdigest(), released.pointer.size)
    put_json(s3_bucket.client, s3_bucket.name, "releases/current.json", wrong.to_json())

    second = launch_node(root, s3_bucket)  # the next boot: the same root
    nodes.append(second)
    second.wait_running()

    status = second.status()
    assert status["release"] == released.pointer.version == second.layout.current_version()
    assert "update refused" in status["error"] and "refusing it" in status["error"]
    assert not second.layout.release_dir(version).exists()
    command = Path(f"/proc/{second.child('render')['pid']}/cmdline").read_bytes().split(b"\0")
    assert command[0].decode().startswith(str(second.layout.release_dir(released.pointer.version)))
    log = (second.layout.log_dir / "bootstrap.log").read_text()
    assert f"update refused; keeping release={released.pointer.version}" in log
    assert second.stop().returncode == 0


@pytest.mark.slow
def test_a_release_without_kernels_for_this_cpu_is_warmed_up_in_the_background(s3_bucket, released, nodes,
                                                                                tmp_path):
    node = launch_node(tmp_path / "node", s3_bucket, warmup=True)
    nodes.append(node)
    node.wait_running()
    assert node.status()["kernels"] == "none"
    wait_or_show(node, lambda: "warmup" in node.status().get("phases", {}), 180, "the warm-up")
    release = node.layout.current.resolve()
    assert (release / ".warmed").is_file() and list(release.glob("lib/python*/site-packages/tiler/__pycache__/*.nbi"))
    assert "warmup done" in (node.layout.log_dir / "warmup.console.log").read_text()
    assert node.stop().returncode == 0
