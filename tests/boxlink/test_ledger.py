"""The verified-objects ledger: verified files are trusted without re-hashing, nothing else is."""

from __future__ import annotations

import os
import shutil

from boxlink.apply import LEDGER
from gigaformat.layout import DatasetDir
from tests.boxlink.walls import DATASET, documents, make_node, publish_source


def _forget_generation(folder: DatasetDir) -> None:
    """Make the node plan the snapshot again, keeping its objects (as after losing its state)."""
    folder.current.unlink()
    (folder.path / "synch.down").unlink()
    shutil.rmtree(folder.generations)


def test_an_object_changed_in_place_is_not_trusted(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    node, _ = make_node(tmp_path / "node", s3_bucket)
    node.sync_dataset(DATASET)
    folder = DatasetDir(tmp_path / "node", DATASET)
    pack = sorted(folder.load_current_state().packs())[0]
    path = folder.object_path(pack)
    good, st = path.read_bytes(), path.stat()
    with path.open("r+b") as handle:  # same inode, same size, mtime put back: only the bytes differ
        handle.seek(len(good) // 3)
        handle.write(bytes([good[len(good) // 3] ^ 0x55]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    _forget_generation(folder)

    result = node.sync_dataset(DATASET)

    assert result.generation == 1 and path.read_bytes() == good
    assert result.fetch.objects == 1 + documents(s3_bucket)  # the tampered pack (fetched again), the index


def test_a_correct_file_not_in_the_ledger_is_hashed_and_kept(s3_bucket, wall, tmp_path):
    publish_source(wall, s3_bucket)
    node, _ = make_node(tmp_path / "node", s3_bucket)
    node.sync_dataset(DATASET)
    folder = DatasetDir(tmp_path / "node", DATASET)
    pack = sorted(folder.load_current_state().packs())[0]
    inode = folder.object_path(pack).stat().st_ino
    (folder.path / LEDGER).unlink()  # e.g. a kill between the rename and the ledger line
    _forget_generation(folder)

    result = node.sync_dataset(DATASET)

    assert result.generation == 1 and result.fetch.objects == documents(s3_bucket)  # the index only
    assert folder.object_path(pack).stat().st_ino == inode  # not downloaded again
    assert pack in (folder.path / LEDGER).read_text()
