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
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bootstrap.node.status import pid_alive
from boxlink.apply import DISK_HEADROOM
from gigaformat.clock import parse_iso
from gigaformat.layout import DatasetDir
from gigaformat.manifest import dataset_prefix, manifest_key
from gigaformat.s3 import read_manifest
from tests.boxlink.walls import copy_wall, small_edit
from tests.chaos.cluster import DATASET, Cluster, free_loopback, launch, sigkill
from tests.chaos.load import Reference, pixel_digest
from tests.chaos.scheduler import Checks, Report, Scenario, run
from tests.processes import BIN, Process, wait_for
from tiler.dataset import LoadedDataset
from tiler.encode import encode_tile

BOXLINK = str(BIN / "boxlink")
MB = 1 << 20


def assert_bar(report: Report, nodes_killed: int = 0) -> None:
    assert report.wrong_pixels == 0, report
    if nodes_killed:
        assert report.failed <= 0.001 * nodes_killed * report.requests, report
    assert report.recovery_seconds is not None, report


def sync_command(root: Path, *extra: str) -> list[str]:
    return [BOXLINK, "sync", "--root", str(root), "--dataset", DATASET, "--attempts", "2", *extra]


def sync_once(root: Path, cluster: Cluster, *extra: str) -> subprocess.CompletedProcess:
    """``boxlink sync`` of the dataset into a fresh node root: what a new node's replicator does first."""
    return subprocess.run(sync_command(root, *extra), capture_output=True, text=True, timeout=120,
                          env=cluster.bucket.env)


def start_sync(root: Path, cluster: Cluster, *extra: str) -> subprocess.Popen:
    """``sync_once`` started, not waited for."""
    return subprocess.Popen(sync_command(root, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cluster.bucket.env)


def same_pixels(root: Path, reference: Reference, count: int = 40) -> bool:
    """``count`` tiles rendered from the dataset in ``root`` equal the reference's."""
    loaded = LoadedDataset.open(DatasetDir(root, DATASET))
    step = max(1, len(reference.tiles) // count)
    return all(pixel_digest(encode_tile(loaded.render_tile(*t), "png")) == reference.digest(*t)
               for t in reference.tiles[::step])


def one_line_error(done: subprocess.CompletedProcess) -> bool:
    """Exit 1 with the failure as its last line (``boxlink: error: ...``; log lines may come before), no traceback."""
    lines = done.stderr.strip().splitlines()
    return done.returncode == 1 and "Traceback" not in done.stderr and bool(lines) and \
        lines[-1].startswith("boxlink: error: ")


# --- the reduced run (in make test) -------------------------------------------------------------------------


def test_a_node_sigkilled_under_load(cluster: Cluster, reference: Reference, chaos_results: Path):
    """The whole instance at once (node-bootstrap, its IMDS, boxlink, the render server), then it boots again
    from its root at the same address: ejected, then back through a health check."""
    victim = cluster.nodes[0]
    state: Checks = {}

    def inject() -> Checks:
        began = time.monotonic()
        state["killed_processes"] = len(sigkill(victim.pids()))
        wait_for(lambda: cluster.proxy.live() == cluster.node_ids(cluster.nodes[1:]), 15, "the node ejected")
        state["ejected_after_seconds"] = round(time.monotonic() - began, 2)
        cluster.relaunch(victim)
        return state

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


def fill_once_writing(root: Path, ballast: Path, writer: subprocess.Popen, timeout: float = 60) -> bool:
    """Once a download is under way in ``root`` (a ``.part`` file), fill what is left of its disk with
    ``ballast`` (another program taking the space) while ``writer`` is held stopped, so that its next writes
    meet ENOSPC however fast it downloads. False if no download was seen."""
    deadline = time.monotonic() + timeout
    while not any(root.rglob("*.part")):
        if time.monotonic() > deadline or writer.poll() is not None:
            return False
        time.sleep(0.001)
    writer.send_signal(signal.SIGSTOP)
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (1 << 20, 4096):  # until nothing more fits
            with contextlib.suppress(OSError):
                while os.write(fd, bytes(block)):
                    pass
    finally:
        os.close(fd)
        writer.send_signal(signal.SIGCONT)
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
        writer = start_sync(root, cluster, "--concurrency", "1", "--chunk-mb", "1")
        try:
            found["filled"] = fill_once_writing(root, ballast, writer)
            out, err = writer.communicate(timeout=120)
        finally:
            writer.kill()
        done = subprocess.CompletedProcess(writer.args, writer.returncode, out, err)
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


# --- the rest of make chaos (slow) --------------------------------------------------------------------------


@pytest.mark.slow
def test_the_proxy_sigkilled_and_restarted(cluster: Cluster, reference: Reference, chaos_results: Path):
    """tile-proxy SIGKILLed and started again on its port and disk cache: requests meanwhile are refused
    (connection errors, counted); none is answered wrong, and it serves again within seconds."""

    def inject() -> Checks:
        killed = time.monotonic()
        cluster.proxy.process.signal(signal.SIGKILL)
        cluster.proxy.process.stop()
        cluster.proxy.start()
        return {"restarted after seconds": round(time.monotonic() - killed, 2)}

    report = run(Scenario("proxy-sigkill", "SIGKILL of tile-proxy, then a restart on the same port and cache", inject,
                          cluster.healthy, requests=600), cluster, reference, chaos_results)
    assert_bar(report)
    assert set(report.failures_by_status) <= {"ConnectError", "ReadError", "RemoteProtocolError"}, report


@pytest.mark.slow
def test_seaweedfs_stopped_and_restarted(cluster: Cluster, reference: Reference, chaos_results: Path):
    """S3 gone for 8 s (more than two heartbeat TTLs: no node can renew): the proxy keeps the last known
    records, the nodes serve from disk; once S3 is back every node renews and the proxy lists again."""
    state: Checks = {}
    back: list[float] = []

    def inject() -> Checks:
        stopped = time.monotonic()
        cluster.server.stop()
        time.sleep(8)
        state["proxy saw the outage"] = bool(cluster.proxy.status()["registry"]["error"])
        cluster.server.start()  # the same ports and data
        state["outage seconds"] = round(time.monotonic() - stopped, 1)
        back.append(time.time())
        return state

    def recovered() -> bool:
        beats = [n.registration() for n in cluster.nodes]
        return (not cluster.proxy.status()["registry"]["error"] and cluster.healthy()
                and all(b and parse_iso(b["heartbeat"]).timestamp() >= int(back[0]) for b in beats))

    report = run(Scenario("seaweedfs-restart", "SeaweedFS stopped for 8 s, then started again", inject, recovered,
                          requests=900), cluster, reference, chaos_results)
    assert_bar(report)
    assert report.failed == 0 and state["proxy saw the outage"], report


@pytest.mark.slow
def test_a_publish_killed_between_its_packs_and_its_manifest(cluster: Cluster, reference: Reference,
                                                             chaos_results: Path):
    """``tiler publish`` of an edited wall SIGKILLed once its first new object is in S3, before the manifest:
    the manifest is unchanged and every node keeps serving the published generation's pixels."""
    client, bucket = cluster.bucket.client, cluster.bucket.name
    prefix = dataset_prefix(DATASET)
    found: Checks = {}

    def keys() -> set[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def inject() -> Checks:
        edited = copy_wall(cluster.wall, cluster.work / "edited")
        small_edit(edited)
        manifest = client.get_object(Bucket=bucket, Key=manifest_key(DATASET))["Body"].read()
        before = keys()
        publisher = Process([str(BIN / "tiler"), "publish", str(edited), "--dataset", DATASET, "--bucket", bucket],
                            cluster.work / "interrupted-publish.log", cluster.bucket.env)
        try:
            wait_for(lambda: keys() - before or not publisher.alive(), 120, "the publish's first object",
                     interval=0.005)
            found["publisher alive when killed"] = publisher.alive()
            publisher.signal(signal.SIGKILL)
        finally:
            publisher.stop()
        found["objects left by the killed publish"] = len(keys() - before)
        found["manifest unchanged"] = client.get_object(Bucket=bucket, Key=manifest_key(DATASET))["Body"].read() \
            == manifest
        generation = read_manifest(client, bucket, DATASET).generation
        found["nodes on the published generation"] = all(
            httpx.get(f"{n.url}/tiles/{DATASET}/info.json", timeout=5).json()["generation"] == generation
            for n in cluster.nodes)
        return found

    report = run(Scenario("interrupted-publish", "tiler publish SIGKILLed between its packs and its manifest", inject,
                          cluster.healthy, requests=300), cluster, reference, chaos_results)
    assert_bar(report)
    assert report.failed == 0, report
    assert found["publisher alive when killed"] and found["manifest unchanged"], found
    assert found["nodes on the published generation"], found


def boxlink_pauses(node, point: str) -> int:
    """How many times the node's boxlink has stopped at the debug pause ``point`` (its logs)."""
    return sum(p.read_text(errors="replace").count(f"debug pause point={point}")
               for p in node.layout.log_dir.glob("boxlink*.log"))


@pytest.mark.slow
def test_boxlink_sigkilled_in_every_phase(cluster: Cluster, reference: Reference, chaos_results: Path):
    """A third node joins while its boxlink is SIGKILLed in every phase of its first pass (downloading,
    staged before the switch, switched before ``synch.down``) and once idle; the supervisor restarts it each
    time and the node comes up serving the reference's pixels, taking its share of the load."""
    address, port = free_loopback(max(int(n.address.rsplit(".", 1)[1]) for n in cluster.nodes) + 1)
    found: Checks = {}
    joined: list = []

    def kill_boxlink(node, phase: str, reached) -> None:
        wait_for(lambda: reached() or not pid_alive(node.record["node_pid"]), 120, f"boxlink {phase}",
                 interval=0.002)
        pid = node.child("boxlink").get("pid")
        found[f"killed {phase}"] = bool(pid and sigkill([pid]))
        wait_for(lambda: node.child("boxlink").get("pid") not in (None, pid), 60, f"boxlink restarted after {phase}")

    def inject() -> Checks:
        node = launch(cluster.work / "node-boxlink", cluster.bucket, address, port,
                      {"GIGATILE_DEBUG_PAUSE": "before-switch=2,before-down=2"})
        joined.append(node)
        folder = node.layout.dataset(DATASET)
        kill_boxlink(node, "downloading", lambda: any(folder.objects.rglob("*.part")))
        seen = boxlink_pauses(node, "before-switch")
        kill_boxlink(node, "before the switch", lambda: boxlink_pauses(node, "before-switch") > seen)
        seen = boxlink_pauses(node, "before-down")
        kill_boxlink(node, "before synch.down", lambda: boxlink_pauses(node, "before-down") > seen)
        wait_for(lambda: folder.down_generation() is not None, 60, "synch.down")
        kill_boxlink(node, "idle", lambda: True)
        cluster.nodes.append(node)
        found["restarts"] = node.child("boxlink").get("restarts")
        return found

    try:
        report = run(Scenario("boxlink-sigkill", "SIGKILL of a joining node's boxlink while downloading, before the "
                              "switch, before synch.down and idle", inject, cluster.healthy, requests=1800),
                     cluster, reference, chaos_results)
        served = {row["id"]: row["requests"] for row in cluster.proxy.status()["backends"]}
    finally:
        for node in joined:
            cluster.stop_node(node)
            if node in cluster.nodes:
                cluster.nodes.remove(node)
    assert_bar(report)
    assert report.failed == 0, report
    assert all(v for k, v in found.items() if k.startswith("killed")), found
    assert served.get(f"{address}:{port}", 0) > 0, served


FAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), Path("/usr/lib/faketime/libfaketime.so.1"))


@pytest.mark.slow
def test_a_node_with_its_clock_behind(cluster: Cluster, reference: Reference, chaos_results: Path):
    """A node whose clock is two minutes behind (libfaketime over the whole node): its heartbeats look stale, so
    it never takes traffic, and its record is not swept (S3's LastModified is young).

    Only behind: with the clock ahead, libfaketime shifts the monotonic clock too (faking the wall clock alone
    breaks ``time.sleep``), so a node's timed waits end two minutes late, which is the instrument's fault and
    not a clock skew any node sees."""
    if not FAKETIME.is_file():
        pytest.skip(f"libfaketime is not installed ({FAKETIME}; make chaos installs Debian's faketime)")
    address, port = free_loopback(max(int(n.address.rsplit(".", 1)[1]) for n in cluster.nodes) + 1)
    node_id = f"{address}:{port}"
    found: Checks = {}
    joined: list = []

    def state() -> str:
        return next((r["state"] for r in cluster.proxy.status()["backends"] if r.get("id") == node_id), "absent")

    def inject() -> Checks:
        node = launch(cluster.work / "node-skewed", cluster.bucket, address, port,
                      {"LD_PRELOAD": str(FAKETIME), "FAKETIME": "-120"})
        joined.append(node)
        wait_for(lambda: node.registration() is not None, 120, "the skewed node registered")
        found["heartbeat lag seconds"] = round(time.time() - parse_iso(node.registration()["heartbeat"]).timestamp())
        states = set()
        for _ in range(20):
            states.add(state())
            time.sleep(0.25)
        found["proxy states seen"] = sorted(states)
        found["record kept"] = node.registration() is not None
        return found

    try:
        report = run(Scenario("skewed-clock-behind", "a third node with its clock 120 s behind", inject,
                              lambda: cluster.proxy.live() == cluster.node_ids(), requests=900),
                     cluster, reference, chaos_results)
    finally:
        for node in joined:
            cluster.stop_node(node)
    assert_bar(report)
    states = set(found["proxy states seen"])  # "absent" until the proxy's next poll reads the record
    assert report.failed == 0 and "stale" in states and states <= {"absent", "stale"} and found["record kept"], found
