"""A lazy start: the render server serves a generation boxlink has staged but not yet filled, fetching
missing tiles from S3 (verified), with the same pixels as after full replication; a corrupt object or an
S3 outage in that window gives 503, never wrong bytes; a diff published meanwhile switches in after the fill,
and a boxlink killed in that window is resumed by the next sync while the server goes on serving."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from boxlink.apply import Replica
from boxlink.errors import BoxlinkError
from boxlink.settings import MB, TransferPolicy
from gigaformat.layout import DatasetDir
from gigaformat.s3 import read_manifest
from tests.boxlink.walls import DATASET, publish_source, small_edit
from tests.processes import BIN, Process, wait_for
from tiler.app import build_app
from tiler.catalog import Catalog
from tiler.errors import NotReady
from tiler.settings import ServeSettings

BOXLINK = str(BIN / "boxlink")
POLICY = TransferPolicy(concurrency=4, chunk_bytes=8 * MB, attempts=2, backoff_seconds=0.05)


def every_tile(catalog: Catalog) -> dict[tuple[int, int, int], bytes]:
    ds = catalog.get(DATASET)
    g = ds.geometry
    return {(z, x, y): ds.stored_tile(z, x, y) or b"" for z in range(g.top + 1)
            for x in range(g.tile_counts(z)[0]) for y in range(g.tile_counts(z)[1])}


class PausedSync:
    """boxlink's pass over a dataset a render server wants (synch.active), held at the "lazy" point (staged,
    synch.lazy written, no pack yet) until released."""

    def __init__(self, root: Path, bucket):
        self.reached, self.release = threading.Event(), threading.Event()
        folder = DatasetDir(root, DATASET)
        folder.mark_active(by="the test's render server")
        self.replica = Replica(folder, bucket.client, bucket.name, POLICY, pause=self._pause, lazy_bytes=0,
                               lazy_hold=0.5)
        self.manifest = read_manifest(bucket.client, bucket.name, DATASET)
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _pause(self, point: str) -> None:
        if point == "lazy":
            self.reached.set()
            assert self.release.wait(60)

    def _run(self) -> None:
        self.result = self.replica.sync(self.manifest)

    def __enter__(self) -> PausedSync:
        self.thread.start()
        assert self.reached.wait(60), "boxlink never reached the lazy point"
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.thread.join(60)


@pytest.fixture
def published(s3_env, wall):
    publish_source(wall, s3_env, store="pyramid")
    return s3_env


def test_a_staged_generation_is_served_lazily_with_the_pixels_of_a_full_replica(published, tmp_path):
    root = tmp_path / "node"
    folder = DatasetDir(root, DATASET)
    catalog = Catalog(root, (DATASET,))
    with PausedSync(root, published):
        assert not any(folder.objects.rglob("*.bin")) and folder.down_generation() is None
        assert catalog.refresh() == [DATASET] and catalog.get(DATASET).lazy
        assert catalog.ready()[0]
        lazily = every_tile(catalog)
        assert catalog.get(DATASET).tiles.remote.fetched > 0
    assert folder.down_generation() == 1
    assert catalog.refresh() == [DATASET] and not catalog.get(DATASET).lazy  # the same generation, from disk
    assert every_tile(catalog) == lazily


def test_a_corrupt_object_during_the_lazy_phase_is_refused_not_served(published, tmp_path):
    root = tmp_path / "node"
    manifest = read_manifest(published.client, published.name, DATASET)
    pack = next(o for o in manifest.snapshot.objects if o.key.endswith(".bin"))
    key = f"data/{DATASET}/{pack.key}"
    good = published.client.get_object(Bucket=published.name, Key=key)["Body"].read()
    catalog = Catalog(root, (DATASET,))
    with PausedSync(root, published) as sync:
        published.client.put_object(Bucket=published.name, Key=key, Body=bytes(b ^ 0x5A for b in good))
        catalog.refresh()
        ds = catalog.get(DATASET)
        entry = ds.tile_index.get(ds.geometry.top, 0, 0)
        with pytest.raises(NotReady, match="do not match"):
            ds.stored_tile(ds.geometry.top, 0, 0)
        published.client.put_object(Bucket=published.name, Key=key, Body=good)
        assert ds.stored_tile(ds.geometry.top, 0, 0)[:2] == b"\xff\xd8" and entry is not None
    assert sync.result.generation == 1


def test_an_s3_outage_during_the_lazy_phase_answers_retry(published, s3_server, tmp_path):
    root = tmp_path / "node"
    catalog = Catalog(root, (DATASET,))
    with PausedSync(root, published):
        catalog.refresh()
        ds = catalog.get(DATASET)
        s3_server.stop()
        try:
            with pytest.raises(NotReady, match="S3 cannot be read"):
                ds.stored_tile(ds.geometry.top, 1, 1)
        finally:
            s3_server.start()


def test_a_diff_published_during_the_lazy_phase_switches_in_after_it(published, wall, tmp_path):
    """The lazily served generation keeps its pixels while a diff is published; the node then takes the diff
    and switches, and serves exactly what a node that replicated the new generation from scratch serves."""
    root = tmp_path / "node"
    catalog = Catalog(root, (DATASET,))
    with PausedSync(root, published) as sync:
        catalog.refresh()
        before = every_tile(catalog)
        small_edit(wall)
        assert publish_source(wall, published).generation == 2
        assert every_tile(catalog) == before  # still generation 1, still lazily, from S3
        assert catalog.get(DATASET).generation == 1 and catalog.get(DATASET).lazy
    assert sync.result.generation == 1
    folder = DatasetDir(root, DATASET)
    later = Replica(folder, published.client, published.name, POLICY).sync(
        read_manifest(published.client, published.name, DATASET))
    assert later.generation == 2 and folder.down_generation() == 2
    assert catalog.refresh() == [DATASET] and catalog.get(DATASET).generation == 2
    after = every_tile(catalog)
    assert after != before

    fresh_root = tmp_path / "fresh"
    Replica(DatasetDir(fresh_root, DATASET), published.client, published.name, POLICY).sync(
        read_manifest(published.client, published.name, DATASET))
    fresh = Catalog(fresh_root, (DATASET,))
    fresh.refresh()
    assert every_tile(fresh) == after


def test_boxlink_killed_while_a_node_serves_lazily_is_resumed_without_a_gap(published, tmp_path):
    """SIGKILL at the lazy point (staged, ``synch.lazy`` written, no pack yet): the render server serves the
    staged generation from S3 all the same, and the next ``boxlink sync`` fills it and writes ``synch.down``;
    every tile is the same from disk as it was lazily."""
    root = tmp_path / "node"
    folder = DatasetDir(root, DATASET)
    folder.mark_active(by="the test's render server")
    command = [BOXLINK, "sync", "--root", str(root), "--dataset", DATASET, "--lazy-mb", "0"]
    sync = Process(command, tmp_path / "sync.log", {**published.env, "GIGATILE_DEBUG_PAUSE": "lazy=60"})
    try:
        wait_for(lambda: "debug pause point=lazy" in sync.output() or not sync.alive(), 60, "boxlink at the lazy point")
        assert sync.alive(), sync.output()[-2000:]
        sync.signal(signal.SIGKILL)
        sync.popen.wait(10)
    finally:
        sync.stop()
    assert folder.down_generation() is None and not any(folder.objects.rglob("*.bin"))
    catalog = Catalog(root, (DATASET,))
    assert catalog.refresh() == [DATASET] and catalog.get(DATASET).lazy
    lazily = every_tile(catalog)

    done = subprocess.run(command, env=published.env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert folder.down_generation() == 1 and not list(folder.objects.rglob("*.part"))
    assert catalog.refresh() == [DATASET] and not catalog.get(DATASET).lazy
    assert every_tile(catalog) == lazily


def start_sync(root: Path, bucket, lazy_hold: float, first_tile_wait: float = 0.5) -> threading.Thread:
    replica = Replica(DatasetDir(root, DATASET), bucket.client, bucket.name, POLICY, lazy_bytes=0,
                      lazy_hold=lazy_hold, first_tile_wait=first_tile_wait)
    thread = threading.Thread(target=replica.sync, args=(read_manifest(bucket.client, bucket.name, DATASET),),
                              daemon=True)
    thread.start()
    return thread


def test_the_fill_waits_until_the_render_server_that_wants_the_dataset_serves_it(published, tmp_path):
    """On a node's few cores the workers' load of a staged generation comes before the fill: with
    ``synch.active`` written, boxlink fetches no pack until a render server says it serves the generation."""
    root = tmp_path / "node"
    folder = DatasetDir(root, DATASET)
    catalog = Catalog(root, (DATASET,))
    catalog.request_wanted()
    sync = start_sync(root, published, lazy_hold=60)
    wait_for(lambda: folder.lazy_marker() is not None, 30, "synch.lazy")
    sync.join(1.0)
    assert sync.is_alive() and not any(folder.objects.rglob("*.bin")), "the fill did not wait for the server"
    assert catalog.refresh() == [DATASET] and catalog.get(DATASET).lazy  # it serves generation 1: synch.serving
    assert folder.serving_generation() == 1
    sync.join(60)
    assert not sync.is_alive() and folder.down_generation() == 1


def test_the_fill_then_waits_for_the_first_tile_the_node_answers(published, tmp_path):
    """The node's first viewers come as soon as it is listed: the fill starts once it has answered a tile of
    the generation (``synch.answered``, written by the render server's first tile), not beside it."""
    root = tmp_path / "node"
    folder = DatasetDir(root, DATASET)
    settings = ServeSettings(root=root, datasets=(DATASET,), reload_seconds=0.1)
    with TestClient(build_app(settings)) as client:  # its start writes synch.active; it serves G once staged
        sync = start_sync(root, published, lazy_hold=60, first_tile_wait=60)
        wait_for(lambda: folder.serving_generation() == 1, 30, "synch.serving")
        sync.join(1.0)
        assert sync.is_alive() and not any(folder.objects.rglob("*.bin")), "the fill did not wait for a tile"
        assert folder.answered_generation() is None
        assert client.get(f"/tiles/{DATASET}/info.json").status_code == 200  # not a tile: the fill waits on
        sync.join(0.3)
        assert sync.is_alive() and folder.answered_generation() is None
        assert client.get(f"/tiles/{DATASET}/0/0/0.jpg").status_code == 200
        assert folder.answered_generation() == 1
        sync.join(60)
        assert not sync.is_alive() and folder.down_generation() == 1


def test_a_fill_held_for_a_node_that_answers_no_tile_goes_on_after_the_wait(published, tmp_path):
    root = tmp_path / "node"
    folder = DatasetDir(root, DATASET)
    catalog = Catalog(root, (DATASET,))
    catalog.request_wanted()
    sync = start_sync(root, published, lazy_hold=60, first_tile_wait=0.5)
    wait_for(lambda: folder.lazy_marker() is not None, 30, "synch.lazy")
    assert catalog.refresh() == [DATASET] and folder.serving_generation() == 1
    sync.join(60)
    assert not sync.is_alive() and folder.down_generation() == 1 and folder.answered_generation() is None


def test_a_fill_held_for_a_render_server_that_never_serves_goes_on_after_the_hold(published, tmp_path):
    root = tmp_path / "node"
    folder = DatasetDir(root, DATASET)
    folder.mark_active(by="a render server that never comes")
    sync = start_sync(root, published, lazy_hold=0.5)
    sync.join(60)
    assert not sync.is_alive() and folder.down_generation() == 1 and folder.serving_generation() is None


def test_with_no_render_server_waiting_the_packs_come_alongside_the_documents(published, tmp_path):
    """No ``synch.active``: nobody starts lazily from what the documents stage, so the packs do not wait for
    them (a ``boxlink sync`` by hand, or a pass too small to go lazy): a pack is in place while the pass is
    still at the lazy point, right after staging."""
    root = tmp_path / "node"
    folder = DatasetDir(root, DATASET)
    packs_during_staging = []

    def at(point: str) -> None:
        if point == "lazy":
            wait_for(lambda: any(folder.objects.rglob("*.bin")), 30, "a pack while the documents are staged")
            packs_during_staging.append(True)

    replica = Replica(folder, published.client, published.name, POLICY, pause=at, lazy_bytes=0)
    result = replica.sync(read_manifest(published.client, published.name, DATASET))
    assert packs_during_staging == [True]
    assert result.generation == folder.down_generation() == 1 and not list(folder.objects.rglob("*.part"))


def test_a_document_that_fails_ends_the_packs_fetched_alongside_it(published, tmp_path):
    manifest = read_manifest(published.client, published.name, DATASET)
    key = f"data/{DATASET}/{manifest.snapshot.index}"
    published.client.put_object(Bucket=published.name, Key=key, Body=b"not the state")
    folder = DatasetDir(tmp_path / "node", DATASET)
    replica = Replica(folder, published.client, published.name, POLICY, lazy_bytes=0)

    with pytest.raises(BoxlinkError, match="object has 13 bytes"):
        replica.sync(manifest)

    assert not [t for t in threading.enumerate() if t.name == "boxlink-packs"], "the packs' fetch goes on"
    assert folder.current_generation() is None and not list(folder.objects.rglob("*.part"))
