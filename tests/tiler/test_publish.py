"""``tiler publish`` against a real S3 server (SeaweedFS): snapshots, diffs, crashes, retention."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from gigaformat.errors import InvalidName
from gigaformat.manifest import Manifest, dataset_prefix, manifest_key
from gigaformat.s3 import load_remote_state, make_client
from tiler.generate import generate_wall
from tiler.publish import publish

DS = "covers"


@pytest.fixture(scope="module")
def wall(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wall") / "src"
    generate_wall(out, gigapixels=0.05, unique=24, seed=7)
    return out


def _copy_wall(wall: Path, to: Path) -> Path:
    subprocess.run(["cp", "-r", str(wall), str(to)], check=True)
    return to


def _manifest(bucket) -> Manifest:
    return Manifest.from_bytes(bucket.client.get_object(Bucket=bucket.name, Key=manifest_key(DS))["Body"].read())


def _rows(src: Path) -> list[list[str]]:
    return list(csv.reader((src / "items.csv").open()))


def _write_rows(src: Path, rows: list[list[str]]) -> None:
    with (src / "items.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _edit(src: Path) -> tuple[str, str, str]:
    """Change one item's image, remove one item, add one: return their ids."""
    rows = _rows(src)
    header, body = rows[0], rows[1:]
    changed, removed = body[3], body[5]
    other = next(r for r in body if r[5] != changed[5])  # scaled to the changed row's rectangle
    changed[5] = other[5]
    added = ["added-1", "40", "40", "300", "450", body[0][5], *body[0][6:]]
    _write_rows(src, [header] + [r for r in body if r is not removed] + [added])
    return changed[0], removed[0], added[0]


def test_snapshot_then_diff_then_nothing(s3_env, wall, tmp_path):
    src = _copy_wall(wall, tmp_path / "src")
    client = make_client()
    first = publish(src, DS, s3_env.name, client)
    assert first.kinds == ("snapshot",) and first.generation == 1
    manifest = _manifest(s3_env)
    assert manifest.generation == 1 and manifest.snapshot.generation == 1 and manifest.diffs == []
    packs = [o for o in manifest.snapshot.objects if o.key.endswith(".bin")]
    assert packs and all(o.key.startswith("snap-1/") for o in manifest.snapshot.objects)

    changed, removed, added = _edit(src)
    second = publish(src, DS, s3_env.name, client)
    assert second.kinds == ("diff",) and second.generation == 2 and second.changed_items == 3
    assert second.bytes_uploaded < first.bytes_uploaded / 4  # a diff carries only what changed
    manifest = _manifest(s3_env)
    assert [d.generation for d in manifest.diffs] == [2] and manifest.snapshot.generation == 1
    state = load_remote_state(client, s3_env.name, manifest)
    assert removed not in state.items and added in state.items
    assert state.items[changed].variant != load_remote_state_at_1(client, s3_env.name).items[changed].variant
    assert any(2 in row for row in state.cells) and any(1 in row for row in state.cells)

    third = publish(src, DS, s3_env.name, client)
    assert third.kinds == () and third.generation == 2 and _manifest(s3_env).generation == 2


def load_remote_state_at_1(client, bucket):
    manifest = Manifest.from_bytes(client.get_object(Bucket=bucket, Key=manifest_key(DS))["Body"].read())
    manifest.diffs = []
    manifest.generation = manifest.snapshot.generation
    return load_remote_state(client, bucket, manifest)


def test_manifest_sha256_matches_every_object(s3_env, wall):
    publish(wall, DS, s3_env.name, make_client())
    manifest = _manifest(s3_env)
    for key, ref in manifest.objects().items():
        body = s3_env.client.get_object(Bucket=s3_env.name, Key=dataset_prefix(DS) + key)["Body"].read()
        assert len(body) == ref.size and hashlib.sha256(body).hexdigest() == ref.sha256, key


def test_interrupted_publish_leaves_the_old_manifest_and_reruns_cleanly(s3_env, wall, tmp_path, monkeypatch):
    src = _copy_wall(wall, tmp_path / "src")
    client = make_client()
    publish(src, DS, s3_env.name, client)
    before = _manifest(s3_env).to_bytes()
    _edit(src)

    import tiler.publish as publisher

    real_upload = publisher.upload_files

    def crash_after_first(client_, bucket, uploads, on_bytes):
        uploads = list(uploads)
        real_upload(client_, bucket, uploads[:1], on_bytes)
        raise KeyboardInterrupt("simulated crash mid-upload")

    monkeypatch.setattr(publisher, "upload_files", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        publish(src, DS, s3_env.name, client)
    assert _manifest(s3_env).to_bytes() == before  # readers still see generation 1, complete

    monkeypatch.setattr(publisher, "upload_files", real_upload)
    rerun = publish(src, DS, s3_env.name, client)
    assert rerun.generation == 2 and rerun.kinds == ("diff",)
    manifest = _manifest(s3_env)
    for key, ref in manifest.objects().items():
        head = client.head_object(Bucket=s3_env.name, Key=dataset_prefix(DS) + key)
        assert head["ContentLength"] == ref.size
    load_remote_state(client, s3_env.name, manifest)  # every listed object verifies


def _keys(bucket, prefix: str) -> set[str]:
    paginator = bucket.client.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=bucket.name, Prefix=dataset_prefix(DS) + prefix)
    return {o["Key"][len(dataset_prefix(DS)):] for page in pages for o in page.get("Contents", [])}


def test_what_a_killed_publish_left_is_deleted_by_the_next(s3_env, wall, tmp_path):
    """A publish killed outright (no cleanup ran) leaves packs under the next generation's prefix; when the
    re-run's source has changed since, or its diff comes out empty, nothing would ever list or delete them."""
    src = _copy_wall(wall, tmp_path / "src")
    client = make_client()
    publish(src, DS, s3_env.name, client)
    stray = {"diff-2/pack-099.bin", "snap-2/pack-000.bin"}
    for key in stray:
        client.put_object(Bucket=s3_env.name, Key=dataset_prefix(DS) + key, Body=b"left by a killed publish")
    before = _manifest(s3_env).to_bytes()
    unchanged = publish(src, DS, s3_env.name, client)
    assert unchanged.generation == 1 and _manifest(s3_env).to_bytes() == before
    assert not (_keys(s3_env, "diff-2/") | _keys(s3_env, "snap-2/")) & stray

    for key in stray:
        client.put_object(Bucket=s3_env.name, Key=dataset_prefix(DS) + key, Body=b"left by a killed publish")
    _edit(src)
    assert publish(src, DS, s3_env.name, client).generation == 2
    manifest = _manifest(s3_env)
    assert _keys(s3_env, "diff-2/") == {k for k in manifest.objects() if k.startswith("diff-2/")}
    assert not _keys(s3_env, "snap-2/")
    assert _keys(s3_env, "snap-1/") == {k for k in manifest.objects() if k.startswith("snap-1/")}
    load_remote_state(client, s3_env.name, manifest)


def test_a_compaction_sweeps_what_a_killed_one_left_and_keeps_what_nodes_use(s3_env, wall, tmp_path):
    src = _copy_wall(wall, tmp_path / "src")
    client = make_client()
    publish(src, DS, s3_env.name, client)
    _edit(src)
    publish(src, DS, s3_env.name, client)  # generation 2: a diff
    stray = "snap-2/pack-099.bin"  # what a compaction of generation 2, killed before its manifest, left
    client.put_object(Bucket=s3_env.name, Key=dataset_prefix(DS) + stray, Body=b"left by a killed compaction")
    diff_objects = _keys(s3_env, "diff-2/")
    compacted = publish(src, DS, s3_env.name, client, snapshot=True, retention=timedelta(hours=1))
    assert compacted.kinds == ("snapshot",) and compacted.generation == 2
    manifest = _manifest(s3_env)
    assert stray not in _keys(s3_env, "snap-2/")
    assert _keys(s3_env, "snap-2/") == {k for k in manifest.objects() if k.startswith("snap-2/")}
    assert _keys(s3_env, "diff-2/") == diff_objects  # listed or retired: nodes may still take it
    load_remote_state(client, s3_env.name, manifest)
    # Killed again, and the next publish is an ordinary diff: it sweeps the generation before its own too.
    client.put_object(Bucket=s3_env.name, Key=dataset_prefix(DS) + stray, Body=b"left by a killed compaction")
    rows = _rows(src)
    rows[2][1] = str(int(rows[2][1]) + 8)
    _write_rows(src, rows)
    assert publish(src, DS, s3_env.name, client).generation == 3
    assert stray not in _keys(s3_env, "snap-2/")
    load_remote_state(client, s3_env.name, _manifest(s3_env))


def test_nothing_is_swept_when_another_publish_changed_the_manifest(s3_env, wall, tmp_path):
    import tiler.publish as publisher

    src = _copy_wall(wall, tmp_path / "src")
    client = make_client()
    publish(src, DS, s3_env.name, client)
    stray = dataset_prefix(DS) + "diff-2/pack-000.bin"
    client.put_object(Bucket=s3_env.name, Key=stray, Body=b"another publish's, in flight")
    seen = _manifest(s3_env)
    seen.published = "2000-01-01T00:00:00Z"  # what this publish read, since replaced by another's
    publisher._remove_leftovers(client, s3_env.name, DS, seen, {2})
    assert client.head_object(Bucket=s3_env.name, Key=stray)["ContentLength"] > 0
    publisher._remove_leftovers(client, s3_env.name, DS, _manifest(s3_env), {2})
    assert "diff-2/pack-000.bin" not in _keys(s3_env, "diff-2/")


def test_snapshot_compaction_keeps_diffs_for_old_nodes_then_expires(s3_env, wall, tmp_path):
    src = _copy_wall(wall, tmp_path / "src")
    client = make_client()
    publish(src, DS, s3_env.name, client)
    _edit(src)
    publish(src, DS, s3_env.name, client)
    rows = _rows(src)
    rows[2][1] = str(int(rows[2][1]) + 8)
    _write_rows(src, rows)
    compacted = publish(src, DS, s3_env.name, client, snapshot=True, retention=timedelta(hours=1))
    assert compacted.kinds == ("diff", "snapshot") and compacted.generation == 3
    manifest = _manifest(s3_env)
    assert manifest.snapshot.generation == 3
    assert [r["prefix"] for r in manifest.retired] == ["snap-1/"]
    assert [d.generation for d in manifest.diffs] == [2, 3]  # a node at 1 or 2 still takes the cheap path
    # With no retention, the next publish deletes what was retired.
    rows[2][1] = str(int(rows[2][1]) + 8)
    _write_rows(src, rows)
    publish(src, DS, s3_env.name, client, retention=timedelta(0))
    for prefix in ("snap-1/", "diff-2/", "diff-3/"):
        listed = client.list_objects_v2(Bucket=s3_env.name, Prefix=dataset_prefix(DS) + prefix)
        assert listed.get("KeyCount", 0) == 0, prefix
    assert [d.generation for d in _manifest(s3_env).diffs] == [4]
    load_remote_state(client, s3_env.name, _manifest(s3_env))


def test_cli_errors_are_one_line(s3_bucket, wall, tmp_path):
    env = {**s3_bucket.env, "GIGATILE_BUCKET": "no-such-bucket-here"}
    result = subprocess.run([sys.executable, "-m", "tiler.cli", "publish", str(wall), "--dataset", DS],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no-such-bucket-here" in result.stderr
    result = subprocess.run([sys.executable, "-m", "tiler.cli", "publish", str(tmp_path / "missing")],
                            env=s3_bucket.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "not a folder" in result.stderr


def test_bad_dataset_name_is_refused(s3_env, wall):
    with pytest.raises(InvalidName, match="dataset name"):
        publish(wall, "../evil", s3_env.name, make_client())
