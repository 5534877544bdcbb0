"""``boxlink`` as a process: kills at chosen points and clean resumes, ``run`` following new diffs, ``status``."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from boxlink.status import read_status
from gigaformat.layout import DatasetDir
from gigaformat.s3 import read_manifest
from tests.boxlink.walls import DATASET, big_edit, make_node, publish_source, small_edit
from tests.processes import BIN, Process, wait_for

BOXLINK = str(BIN / "boxlink")


def boxlink(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([BOXLINK, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_kill_during_download_then_resume_fetches_only_the_rest(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    big_edit(wall)
    publish_source(wall, s3_bucket)  # generation 2: a large diff
    root = tmp_path / "node"
    folder = DatasetDir(root, DATASET)
    snap_pack, diff_part = folder.object_path("snap-1/pack-000.bin"), folder.object_path("diff-2/pack-000.bin.part")
    # One object at a time, so the snapshot's pack is verified while the diff's is still coming.
    sync = Process([BOXLINK, "sync", "--root", str(root), "--dataset", DATASET, "--concurrency", "1",
                    "--chunk-mb", "4"], tmp_path / "sync.log", s3_bucket.env)
    try:
        wait_for(lambda: (snap_pack.exists() and diff_part.exists()) or not sync.alive(), 60, "the diff's .part",
                 interval=0.002)
        sync.signal(signal.SIGKILL)
        sync.popen.wait(10)
    finally:
        sync.stop()
    assert snap_pack.exists() and sync.popen.returncode == -signal.SIGKILL, sync.output()[-2000:]
    assert folder.current_generation() is None and folder.down_generation() is None
    kept = _stat(snap_pack)
    # an object is named only once verified; the packs come alongside the documents, so which of the
    # documents were in by the kill depends on timing
    listed = read_manifest(s3_bucket.client, s3_bucket.name, DATASET).objects()
    verified = {key for key in listed if folder.object_path(key).exists()}

    done = boxlink(s3_bucket.env, "sync", "--root", str(root), "--dataset", DATASET)

    assert done.returncode == 0, done.stderr
    assert folder.current_generation() == folder.down_generation() == 2
    assert _stat(snap_pack) == kept  # verified before the kill: not downloaded again
    last = read_status(folder)["last_pass"]
    # what was not verified before the kill, and only that: the diff's pack, and any document still coming
    assert "diff-2/pack-000.bin" not in verified and "snap-1/pack-000.bin" in verified
    assert last["objects"] == len(listed) - len(verified), (last, sorted(verified))
    assert last["bytes"] < snap_pack.stat().st_size, last
    assert not list(folder.objects.rglob("*.part"))


def test_sigterm_during_download_exits_0_and_keeps_nothing_partial(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    root = tmp_path / "node"
    folder = DatasetDir(root, DATASET)
    sync = Process([BOXLINK, "sync", "--root", str(root), "--dataset", DATASET, "--concurrency", "1",
                    "--chunk-mb", "2"], tmp_path / "sync.log", s3_bucket.env)
    try:
        wait_for(lambda: any(folder.objects.rglob("*.part")) or not sync.alive(), 60, "a .part", interval=0.002)
        sync.signal(signal.SIGTERM)
        code = sync.popen.wait(10)
    finally:
        sync.stop()
    assert code == 0, sync.output()[-2000:]
    assert "stopped" in sync.output()
    assert not list(folder.objects.rglob("*.part")) and folder.current_generation() is None


@pytest.mark.parametrize("point", ["before-switch", "before-down"])
def test_kill_during_apply_then_resume_fetches_nothing(s3_bucket, wall, tmp_path, point):
    publish_source(wall, s3_bucket)
    root = tmp_path / "node"
    make_node(root, s3_bucket)[0].sync_dataset(DATASET)
    small_edit(wall)
    publish_source(wall, s3_bucket)
    folder = DatasetDir(root, DATASET)
    staged = folder.generation_dir(2) / "state.json.gz"
    # The debug hook holds the process at the point; the test kills it there, as seen on disk.
    reached = {"before-switch": lambda: staged.is_file() and folder.current_generation() == 1,
               "before-down": lambda: folder.current_generation() == 2 and folder.down_generation() == 1}[point]
    sync = Process([BOXLINK, "sync", "--root", str(root), "--dataset", DATASET], tmp_path / "sync.log",
                   {**s3_bucket.env, "GIGATILE_DEBUG_PAUSE": f"{point}=60"})
    try:
        wait_for(lambda: reached() or not sync.alive(), 60, f"boxlink at {point}", interval=0.01)
        assert sync.alive(), sync.output()[-2000:]
        wait_for(lambda: "debug pause" in sync.output(), 10, "the pause")
        sync.signal(signal.SIGKILL)
        sync.popen.wait(10)
    finally:
        sync.stop()
    assert folder.down_generation() == 1  # the render server still serves generation 1
    assert folder.current_generation() == (1 if point == "before-switch" else 2)

    done = boxlink(s3_bucket.env, "sync", "--root", str(root), "--dataset", DATASET)

    assert done.returncode == 0, done.stderr
    assert folder.current_generation() == folder.down_generation() == 2
    assert read_status(folder)["last_pass"]["objects"] == 0  # everything was verified before the kill


def test_run_follows_a_new_diff_and_stops_cleanly_on_sigterm(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    root = tmp_path / "node"
    folder = DatasetDir(root, DATASET)
    folder.mark_active()  # what the render server does
    DatasetDir(root, "other").path.mkdir(parents=True)  # not active: left alone
    run = Process([BOXLINK, "run", "--root", str(root), "--interval", "0.3", "--instance-id", "node-7",
                   "--log-interval", "0.5"], tmp_path / "run.log", s3_bucket.env)
    try:
        wait_for(lambda: folder.down_generation() == 1 or not run.alive(), 60, "generation 1")
        wait_for(lambda: read_status(folder).get("not_modified", 0) >= 2, 10, "polls answered 304")
        small_edit(wall)
        publish_source(wall, s3_bucket)
        wait_for(lambda: folder.down_generation() == 2 or not run.alive(), 10, "generation 2")
        assert folder.current_generation() == 2  # how soon: bench/boxlink.py's diff_to_down_seconds

        status = boxlink(s3_bucket.env, "status", "--root", str(root), "--json")
        table = boxlink(s3_bucket.env, "status", "--root", str(root))
        key = "logs/node-7/boxlink.log"
        wait_for(lambda: s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name, Prefix=key).get("KeyCount"), 10,
                 "boxlink's own log in S3")
        run.signal(signal.SIGTERM)
        assert run.popen.wait(15) == 0, run.output()[-2000:]
    finally:
        run.stop()
    rows = {r["dataset"]: r for r in json.loads(status.stdout)["datasets"]}
    assert rows[DATASET] | {"last_check": None} == {
        "dataset": DATASET, "active": True, "local_generation": 2, "remote_generation": 2, "lag": 0,
        "last_error": None, "last_check": None, "last_sync": rows[DATASET]["last_sync"]}
    assert rows["other"]["local_generation"] is None and rows["other"]["active"] is False
    assert not DatasetDir(root, "other").objects.exists()
    line = next(r for r in table.stdout.splitlines() if r.startswith(DATASET)).split()
    assert line[:5] == [DATASET, "yes", "2", "2", "0"], table.stdout
    shipped = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=key)
    assert b"sync done dataset=covers generation=2" in shipped["Body"].read()
    assert len(shipped["Metadata"]["sha256"]) == 64


def test_status_shows_lag_and_error_and_sync_fails_with_a_clear_message(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    root = tmp_path / "node"
    assert boxlink(s3_bucket.env, "sync", "--root", str(root), "--dataset", DATASET).returncode == 0
    small_edit(wall)
    publish_source(wall, s3_bucket)
    manifest = json.loads(s3_bucket.client.get_object(Bucket=s3_bucket.name,
                                                      Key=f"data/{DATASET}/manifest.json")["Body"].read())
    s3_bucket.client.delete_object(Bucket=s3_bucket.name, Key=f"data/{DATASET}/{manifest['diffs'][-1]['index']}")

    failed = boxlink(s3_bucket.env, "sync", "--root", str(root), "--dataset", DATASET, "--attempts", "1")
    missing = boxlink(s3_bucket.env, "sync", "--root", str(root), "--dataset", "nothing-here")
    status = boxlink(s3_bucket.env, "status", "--root", str(root))

    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "error:" in failed.stderr and "NoSuchKey" in failed.stderr, failed.stderr
    assert missing.returncode == 1 and "not published" in missing.stderr, missing.stderr
    line = next(r for r in status.stdout.splitlines() if r.startswith(DATASET))
    assert line.split()[:5] == [DATASET, "no", "1", "2", "1"] and "NoSuchKey" in line, status.stdout
    assert DatasetDir(root, DATASET).down_generation() == 1
