"""The chaos scenarios, one at a time on the module's cluster under bounded load (tests/chaos/scheduler.py).

The first three (a node SIGKILLed, corrupted objects in S3, a full disk) are the reduced run inside
``make test``; ``make chaos`` runs them all (the others are marked slow). Every scenario leaves the cluster as
it found it: two nodes live behind tile-proxy, the same published generation's pixels.

Bar: 0 wrong pixels in every scenario; at most 0.1 % failed requests per node killed; every corruption
detected (refused by boxlink, never switched in)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from boxlink.apply import DISK_HEADROOM
from gigaformat.layout import DatasetDir
from gigaformat.manifest import dataset_prefix
from gigaformat.s3 import read_manifest
from tests.chaos.cluster import DATASET, Cluster, sigkill
from tests.chaos.load import Reference, pixel_digest
from tests.chaos.scheduler import Checks, Report, Scenario, run
from tests.processes import BIN, wait_for
from tiler.dataset import LoadedDataset
from tiler.encode import encode_tile

BOXLINK = str(BIN / "boxlink")
MB = 1 << 20


def assert_bar(report: Report, nodes_killed: int = 0) -> None:
    assert report.wrong_pixels == 0, report
    if nodes_killed:
        assert report.failed <= 0.001 * nodes_killed * report.requests, report
    assert report.recovery_seconds is not None, report


def sync_once(root: Path, cluster: Cluster, *extra: str) -> subprocess.CompletedProcess:
    """``boxlink sync`` of the dataset into a fresh node root: what a new node's replicator does first."""
    return subprocess.run([BOXLINK, "sync", "--root", str(root), "--dataset", DATASET, "--attempts", "2", *extra],
                          capture_output=True, text=True, timeout=120, env=cluster.bucket.env)


def same_pixels(root: Path, reference: Reference, count: int = 40) -> bool:
    """``count`` tiles rendered from the dataset in ``root`` equal the reference's."""
    loaded = LoadedDataset.open(DatasetDir(root, DATASET))
    step = max(1, len(reference.tiles) // count)
    return all(pixel_digest(encode_tile(loaded.render_tile(*t), "png")) == reference.digest(*t)
               for t in reference.tiles[::step])


def one_line_error(done: subprocess.CompletedProcess) -> bool:
    return "Traceback" not in done.stderr and done.returncode != 0


# --- the reduced run (in make test) -------------------------------------------------------------------------


def test_a_node_sigkilled_under_load(cluster: Cluster, reference: Reference, chaos_results: Path):
    """The whole instance at once (node-bootstrap, its IMDS, boxlink, the render server), then it boots again
    from its root at the same address: ejected, then back through a health check."""
    victim = cluster.nodes[0]
    state: Checks = {}

    def inject() -> Checks:
        state["killed_processes"] = len(sigkill(victim.pids()))
        wait_for(lambda: cluster.proxy.live() == cluster.node_ids(cluster.nodes[1:]), 15, "the node ejected")
        state["ejected_after_seconds"] = round(time.monotonic() - began, 2)
        cluster.relaunch(victim)
        return state

    began = time.monotonic()
    report = run(Scenario("node-sigkill", "SIGKILL of every process of one node of two, then its reboot from the "
                          "same root, address and port", inject, cluster.healthy, requests=900, rate=60),
                 cluster, reference, chaos_results)
    assert_bar(report, nodes_killed=1)
    assert report.checks["killed_processes"] >= 3


def test_corrupted_objects_in_s3_are_detected_and_never_switched_in(cluster: Cluster, reference: Reference,
                                                                     chaos_results: Path):
    """A flipped byte in the largest pack, the generation's state document truncated: a new node's boxlink
    refuses each (sha256/size), switches nothing in, and replicates once the object is whole again."""
    client, bucket = cluster.bucket.client, cluster.bucket.name
    manifest = read_manifest(client, bucket, DATASET)
    largest = max(manifest.objects().values(), key=lambda o: o.size)
    prefix = dataset_prefix(DATASET)
    targets = {"flipped byte in the largest pack": prefix + largest.key,
               "truncated state document": prefix + manifest.snapshot.index}
    found: Checks = {}

    def inject() -> Checks:
        detected = 0
        for i, (what, key) in enumerate(targets.items()):
            original = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            damaged = bytearray(original)
            if what.startswith("flipped"):
                damaged[len(damaged) // 2] ^= 0x40
            else:
                damaged = damaged[: len(damaged) // 2]
            client.put_object(Bucket=bucket, Key=key, Body=bytes(damaged))
            root = cluster.work / f"corrupt-{i}"
            try:
                done = sync_once(root, cluster)
            finally:
                client.put_object(Bucket=bucket, Key=key, Body=original)
            folder = DatasetDir(root, DATASET)
            refused = (one_line_error(done) and folder.current_generation() is None
                       and not list(folder.objects.rglob("*.part")))
            detected += refused
            found[f"{what}: refused"] = refused
            found[f"{what}: error"] = (done.stderr.strip().splitlines() or [""])[-1][:160]
            again = sync_once(root, cluster)
            found[f"{what}: replicated once whole"] = again.returncode == 0 and same_pixels(root, reference)
        found["corruptions injected"], found["corruptions detected"] = len(targets), detected
        return found

    report = run(Scenario("corrupted-object", "objects of the published generation damaged in S3 (a flipped byte, a "
                          "truncation) while a new node replicates it", inject, cluster.healthy, requests=300),
                 cluster, reference, chaos_results)
    assert_bar(report)
    assert report.failed == 0, report
    assert found["corruptions detected"] == found["corruptions injected"], found
    assert all(v for k, v in found.items() if k.endswith("once whole")), found


def mount_tmpfs(where: Path, size_bytes: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def resize_tmpfs(where: Path, size_bytes: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_bytes}", str(where)], check=True, capture_output=True)


def fill_once_writing(root: Path, ballast: Path, timeout: float = 60) -> bool:
    """Once a download is under way in ``root`` (a ``.part`` file), fill what is left of its disk with
    ``ballast`` (another program taking the space): the next writes meet ENOSPC. False if none was seen."""
    deadline = time.monotonic() + timeout
    while not any(root.rglob("*.part")):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (1 << 20, 4096):  # until nothing more fits
            with contextlib.suppress(OSError):
                while os.write(fd, bytes(block)):
                    pass
    finally:
        os.close(fd)
    return True


def refused_cleanly(done: subprocess.CompletedProcess, folder: DatasetDir, found: Checks, what: str) -> bool:
    found[f"{what}: boxlink exit"] = done.returncode
    found[f"{what}: error"] = (done.stderr.strip().splitlines() or [""])[-1][:200]
    found[f"{what}: traceback"] = "Traceback" in done.stderr
    if found[f"{what}: traceback"]:
        found[f"{what}: stderr"] = done.stderr[-1500:]
    found[f"{what}: down"] = folder.down_generation() is not None  # what the render server would load
    found[f"{what}: partial files"] = len(list(folder.objects.rglob("*.part")))
    return (one_line_error(done) and not found[f"{what}: down"] and not found[f"{what}: partial files"])


def test_a_full_disk_under_a_node_data_dir(cluster: Cluster, reference: Reference, chaos_results: Path):
    """A node root on a small tmpfs. Too small from the start: boxlink refuses before downloading, in one line.
    Filled by another writer once the download is under way (ENOSPC on real writes): boxlink fails in one line,
    keeps nothing partial and never marks the generation down (what the render server loads). The space
    back: it replicates the reference's pixels."""
    manifest = read_manifest(cluster.bucket.client, cluster.bucket.name, DATASET)
    size = sum(o.size for o in manifest.objects().values())
    enough = size + DISK_HEADROOM + 16 * MB
    mount = cluster.work / "full-disk"
    if not mount_tmpfs(mount, size // 2):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): no real full disk to test on")
    root, ballast = mount / "node", mount / "ballast"
    folder = DatasetDir(root, DATASET)
    found: Checks = {"dataset bytes": size}

    def inject() -> Checks:
        found["too small: refused"] = refused_cleanly(sync_once(root, cluster), folder, found, "too small")
        resize_tmpfs(mount, enough)
        filler = threading.Thread(target=lambda: found.__setitem__("filled", fill_once_writing(root, ballast)))
        filler.start()
        done = sync_once(root, cluster, "--concurrency", "1", "--chunk-mb", "1")
        filler.join(60)
        found["ENOSPC mid-download: refused"] = found.get("filled") is True and refused_cleanly(
            done, folder, found, "ENOSPC mid-download")
        ballast.unlink()
        again = sync_once(root, cluster)
        found["replicated once the space is back"] = again.returncode == 0 and same_pixels(root, reference)
        return found

    try:
        report = run(Scenario("full-disk", "a node root on a tmpfs too small, then filled by another writer "
                              "mid-download, then freed", inject, cluster.healthy, requests=300),
                     cluster, reference, chaos_results)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        shutil.rmtree(mount, ignore_errors=True)
    assert_bar(report)
    assert report.failed == 0, report
    assert all(found[k] for k in ("too small: refused", "ENOSPC mid-download: refused",
                                  "replicated once the space is back")), found
