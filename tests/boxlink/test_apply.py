"""boxlink.apply against a real SeaweedFS: first sync, diffs, corrupt objects, a full disk, the cheaper path."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from boxlink.apply import LEDGER, Replica, dataset_lock
from boxlink.errors import BoxlinkError
from boxlink.settings import MB, TransferPolicy
from boxlink.status import read_status
from gigaformat.itemsdb import ITEMS_INDEX_NAME, ItemsIndex
from gigaformat.layout import DatasetDir
from gigaformat.manifest import dataset_prefix
from gigaformat.s3 import load_remote_state, read_manifest
from tests.boxlink.walls import DATASET, documents, make_node, publish_source, small_edit
from tiler.dataset import LoadedDataset

POLICY = TransferPolicy(concurrency=8, chunk_bytes=8 * MB, attempts=3, backoff_seconds=0.05)


def _replica(root: Path, bucket, pause=lambda point: None) -> Replica:
    return Replica(DatasetDir(root, DATASET), bucket.client, bucket.name, POLICY, pause=pause)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_first_sync_stages_switches_then_marks_down(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    manifest = read_manifest(s3_bucket.client, s3_bucket.name, DATASET)
    folder = DatasetDir(tmp_path / "node", DATASET)
    seen = {}

    def observe(point: str) -> None:  # the disk as the render server would see it at each step
        seen[point] = (folder.current_generation(), folder.down_generation(),
                       (folder.generation_dir(1) / "state.json.gz").is_file())

    with dataset_lock(folder):
        result = _replica(tmp_path / "node", s3_bucket, observe).sync(manifest)

    assert seen == {"before-switch": (None, None, True), "before-down": (1, None, True)}
    assert (result.generation, result.previous, result.route) == (1, None, "snapshot")
    assert folder.current_generation() == folder.down_generation() == 1
    assert json.loads((folder.path / "synch.down").read_text())["generation"] == 1
    assert folder.load_current_state() == load_remote_state(s3_bucket.client, s3_bucket.name, manifest)
    key = dataset_prefix(DATASET) + manifest.snapshot.index  # a lone snapshot is staged as published, not serialised
    published = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read()
    assert (folder.generation_dir(1) / "state.json.gz").read_bytes() == published
    packs = folder.load_current_state().packs()
    assert packs and {p: _sha(folder.object_path(p)) for p in packs} == \
        {p: manifest.objects()[p].sha256 for p in packs}
    assert not list(folder.objects.rglob("*.part"))
    ledger = [json.loads(line) for line in (folder.path / LEDGER).read_text().splitlines()]
    assert {e["key"] for e in ledger} == packs  # index documents are collected once the state is built


def test_diff_changes_rendered_tiles_only_where_items_changed(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    node, counter = make_node(tmp_path / "node", s3_bucket)
    node.sync_dataset(DATASET)
    folder = DatasetDir(tmp_path / "node", DATASET)
    before = LoadedDataset.open(folder)
    edit = small_edit(wall)
    assert publish_source(wall, s3_bucket).kinds == ("diff",)

    result = node.sync_dataset(DATASET)

    assert (result.previous, result.generation, result.route) == (1, 2, "diffs")
    assert result.fetch.objects == 2 and result.fetch.bytes < 30 * MB  # the diff only, not the snapshot
    after = LoadedDataset.open(folder)
    assert (before.generation, after.generation) == (1, 2)
    top = after.geometry.top  # the 1:1 level
    rects = (edit.changed, edit.removed, edit.added)
    for x, y, w, h in rects:  # the tile under each changed item's centre shows the change
        tx, ty = (x + w // 2) // 256, (y + h // 2) // 256
        assert not np.array_equal(before.render_tile(top, tx, ty), after.render_tile(top, tx, ty)), (x, y)
    touched = {(tx, ty) for x, y, w, h in rects for tx in range(x // 256, (x + w - 1) // 256 + 1)
               for ty in range(y // 256, (y + h - 1) // 256 + 1)}
    columns, rows = after.geometry.tile_counts(top)
    untouched = [(tx, ty) for tx in range(0, columns, 3) for ty in range(0, rows, 3) if (tx, ty) not in touched]
    assert len(untouched) > 20
    for tx, ty in untouched:
        assert np.array_equal(before.render_tile(top, tx, ty), after.render_tile(top, tx, ty)), (tx, ty)
    assert sorted(p.name for p in folder.generations.iterdir()) == ["1", "2"]  # the previous one stays
    status = read_status(folder)
    assert (status["local_generation"], status["remote_generation"], status["last_error"]) == (2, 2, None)
    assert status["last_pass"]["route"] == "diffs" and counter.snapshot()["GetObject"] >= 2


def test_corrupt_object_is_refetched_never_switched_in_and_recovers(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    manifest = read_manifest(s3_bucket.client, s3_bucket.name, DATASET)
    pack = next(o for o in manifest.snapshot.objects if o.key.endswith(".bin"))
    key = f"data/{DATASET}/{pack.key}"
    good = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # same size, one byte different
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=bytes(bad))
    node, counter = make_node(tmp_path / "node", s3_bucket, attempts=2)
    folder = DatasetDir(tmp_path / "node", DATASET)

    with pytest.raises(BoxlinkError, match=r"sha256 mismatch.*after 2 attempts"):
        node.sync_dataset(DATASET)

    assert folder.current_generation() is None and folder.down_generation() is None
    assert not folder.object_path(pack.key).exists() and not list(folder.objects.rglob("*.part"))
    assert "sha256 mismatch" in read_status(folder)["last_error"]
    gets_of_pack = counter.snapshot()["GetObject"]
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=good)

    result = node.sync_dataset(DATASET)

    assert result.generation == 1 and folder.down_generation() == 1
    assert _sha(folder.object_path(pack.key)) == pack.sha256
    assert read_status(folder)["last_error"] is None
    chunks = -(-pack.size // (8 * MB))
    # the manifest, the snapshot's index documents, the bad pack twice in full
    assert gets_of_pack == 1 + documents(s3_bucket) + 2 * chunks


def test_corrupt_diff_keeps_last_good_generation(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    node, _ = make_node(tmp_path / "node", s3_bucket, attempts=2)
    node.sync_dataset(DATASET)
    small_edit(wall)
    publish_source(wall, s3_bucket)
    manifest = read_manifest(s3_bucket.client, s3_bucket.name, DATASET)
    index = manifest.diffs[-1].index
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=f"data/{DATASET}/{index}", Body=b"x" * 10)
    folder = DatasetDir(tmp_path / "node", DATASET)

    with pytest.raises(BoxlinkError, match="object has 10 bytes"):
        node.sync_dataset(DATASET)

    assert folder.current_generation() == folder.down_generation() == 1
    assert LoadedDataset.open(folder).generation == 1


def test_full_disk_is_reported_and_nothing_is_switched(s3_bucket, wall, tmp_path, monkeypatch):
    publish_source(wall, s3_bucket)
    node, _ = make_node(tmp_path / "node", s3_bucket)
    node.sync_dataset(DATASET)
    small_edit(wall)
    publish_source(wall, s3_bucket)
    folder = DatasetDir(tmp_path / "node", DATASET)

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("boxlink.transfer.os.posix_fallocate", full)
    with pytest.raises(BoxlinkError, match="disk full"):
        node.sync_dataset(DATASET)
    assert folder.current_generation() == folder.down_generation() == 1
    assert not list(folder.objects.rglob("*.part")) and not folder.generation_dir(2).exists()

    monkeypatch.setattr("boxlink.apply.shutil.disk_usage", lambda path: type("U", (), {"free": 10 * MB})())
    with pytest.raises(BoxlinkError, match=r"disk full: covers needs \d+ MB .* only 10 MB free"):
        node.sync_dataset(DATASET)
    monkeypatch.undo()

    assert node.sync_dataset(DATASET).generation == 2


def test_compaction_takes_the_cheaper_path(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    old_node, _ = make_node(tmp_path / "old", s3_bucket)
    old_node.sync_dataset(DATASET)
    small_edit(wall)
    assert publish_source(wall, s3_bucket, snapshot=True).kinds == ("diff", "snapshot")
    new_node, _ = make_node(tmp_path / "new", s3_bucket)

    held_base, fresh = old_node.sync_dataset(DATASET), new_node.sync_dataset(DATASET)

    assert (held_base.route, fresh.route) == ("diffs", "snapshot")
    assert held_base.fetch.bytes < fresh.fetch.bytes / 4
    assert {p.split("/")[0] for p in DatasetDir(tmp_path / "new", DATASET).load_current_state().packs()} == \
        {"snap-2"}
    old, new = (DatasetDir(tmp_path / n, DATASET).load_current_state() for n in ("old", "new"))
    assert (old.items, old.cells, set(old.variants)) == (new.items, new.cells, set(new.variants))  # packs differ


def test_metadata_replicates_and_a_metadata_only_diff_carries_no_pixels(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    node, _ = make_node(tmp_path / "node", s3_bucket)
    node.sync_dataset(DATASET)
    folder = DatasetDir(tmp_path / "node", DATASET)
    with (wall / "items.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows[:7]:
        row["title"] = "Renamed " + row["title"]
    with (wall / "items.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = publish_source(wall, s3_bucket)
    manifest = read_manifest(s3_bucket.client, s3_bucket.name, DATASET)

    synced = node.sync_dataset(DATASET)

    assert result.kinds == ("diff",) and synced.route == "diffs"
    assert [o.key.rsplit("/", 1)[-1] for o in manifest.diffs[-1].objects] == ["changes.json.gz"]  # no pack
    index = ItemsIndex(folder.generation_dir(2) / ITEMS_INDEX_NAME)
    renamed, _ = index.search(["renamed"], [], 10, 0)
    assert renamed == 7 and len(index.meta([row["id"] for row in rows])) == len(rows)
