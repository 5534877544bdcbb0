"""The coarse raster: decoded coarse levels on the node's disk, the very pixels the stored tiles decode to."""

from __future__ import annotations

import fcntl
import random
import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gigaformat.layout import DatasetDir
from tests.processes import free_port, start_tiler_serve, wait_for
from tests.tiler.awkward_wall import make_awkward_wall
from tiler.coarse_raster import (
    HEADER_BYTES,
    RasterKeeper,
    build_dataset_raster,
    open_raster,
    plan_levels,
    raster_path,
    raster_size,
)
from tiler.dataset import LoadedDataset
from tiler.local_publish import publish_local


@pytest.fixture(scope="module", params=["chains", "pyramid"])
def wall(request, tmp_path_factory) -> DatasetDir:
    """The awkward wall with its busy levels stored (chains) or every level stored or derived (pyramid)."""
    base = tmp_path_factory.mktemp(f"coarse-{request.param}")
    make_awkward_wall(base / "src")
    folder = DatasetDir(base / "node", "awkward")
    publish_local(base / "src", folder, items_per_tile=8, store=request.param)
    return folder


def built(folder: DatasetDir, budget: int = 1 << 30) -> tuple[LoadedDataset, LoadedDataset]:
    """The dataset twice: decoding its tiles, and reading a freshly built raster."""
    decoding, reading = LoadedDataset.open(folder), LoadedDataset.open(folder)
    g = reading.geometry
    levels = plan_levels(g, reading.overview_level, budget, below_top=0)  # every coarse level of a small wall
    path = raster_path(folder, reading.generation)
    path.parent.mkdir(parents=True, exist_ok=True)
    reading.coarse = build_dataset_raster(reading, path, levels)
    assert reading.coarse is not None
    return decoding, reading


def test_every_window_and_tile_from_the_raster_is_what_the_tiles_decode_to(wall):
    decoding, reading = built(wall)
    g = reading.geometry
    assert sorted(reading.coarse.levels) == list(range(reading.overview_level + 1))
    rng = random.Random(7)
    for z in reading.coarse.levels:
        cols, rows = g.tile_counts(z)
        for ty in range(rows):
            for tx in range(cols):
                assert np.array_equal(reading.render_tile(z, tx, ty), decoding.render_tile(z, tx, ty)), (z, tx, ty)
        width, height = g.level_size(z)
        for _ in range(20):  # inside, across tile edges, and hanging over the level's edges (background there)
            w, h = rng.randint(1, width + 300), rng.randint(1, height + 300)
            x0, y0 = rng.randint(-200, width), rng.randint(-200, height)
            assert np.array_equal(reading.render_level_window(z, x0, y0, w, h),
                                  decoding.render_level_window(z, x0, y0, w, h)), (z, x0, y0, w, h)


def test_levels_are_taken_from_the_coarsest_while_they_fit_the_budget(wall):
    ds = LoadedDataset.open(wall)
    g = ds.geometry
    every = plan_levels(g, ds.overview_level, 1 << 40, below_top=0)
    assert [level.z for level in every] == list(range(ds.overview_level + 1))
    assert all(level.offset % HEADER_BYTES == 0 for level in every)
    two = plan_levels(g, ds.overview_level, raster_size(every[:2]) - HEADER_BYTES, below_top=0)
    assert [level.z for level in two] == [0, 1]
    assert plan_levels(g, ds.overview_level, 0, below_top=0) == []
    assert [level.z for level in plan_levels(g, g.top, 1 << 40, below_top=1)] == list(range(g.top))
    assert plan_levels(g, g.top, 1 << 40) == []  # by default no finer than 1:16, and this wall is 1531 px wide


def test_a_truncated_foreign_or_garbled_raster_is_not_used(wall, tmp_path):
    _, reading = built(wall)
    g, path = reading.geometry, reading.coarse.path
    data = path.read_bytes()
    truncated = tmp_path / "truncated.raw"
    truncated.write_bytes(data[:-1])
    assert open_raster(truncated, reading.name, reading.generation, g) is None
    assert open_raster(path, reading.name, reading.generation + 1, g) is None
    assert open_raster(path, "other", reading.generation, g) is None
    garbled = tmp_path / "garbled.raw"
    garbled.write_bytes(b"x" * len(data))
    assert open_raster(garbled, reading.name, reading.generation, g) is None
    assert open_raster(tmp_path / "absent.raw", reading.name, reading.generation, g) is None


def wait_attached(ds: LoadedDataset, keeper: RasterKeeper, folder: DatasetDir, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while ds.coarse is None:
        assert time.monotonic() < deadline, "the coarse raster was not attached"
        keeper.tend(folder, ds)
        time.sleep(0.05)


def test_one_worker_builds_while_another_waits_and_then_opens_the_file(wall):
    path = raster_path(wall, LoadedDataset.open(wall).generation)
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    older = path.with_name("coarse-0.raw")
    older.write_bytes(b"an older generation's raster")
    with open(path.with_name(path.name + ".lock"), "wb") as other_builder:  # another worker is building
        fcntl.flock(other_builder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        waiting = LoadedDataset.open(wall)
        keeper = RasterKeeper(1024, below_top=0)
        for _ in range(5):
            keeper.tend(wall, waiting)
            time.sleep(0.02)
        assert waiting.coarse is None and not path.exists()
    building = LoadedDataset.open(wall)
    wait_attached(building, RasterKeeper(1024, below_top=0), wall)
    assert not older.exists()  # replaced by the newer generation's
    wait_attached(waiting, keeper, wall)
    assert waiting.coarse.path == building.coarse.path == path


def test_a_build_finishing_after_a_newer_generations_leaves_only_the_newer_file(wall):
    ds = LoadedDataset.open(wall)
    path = raster_path(wall, ds.generation)
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    newer = path.with_name(f"coarse-{ds.generation + 1}.raw")
    newer.write_bytes(b"the next generation's raster, finished first")
    try:
        wait_attached(ds, RasterKeeper(1024, below_top=0), wall)
        assert newer.exists() and not path.exists()  # its own file goes: the next generation replaces it
        assert ds.render_level_window(0, 0, 0, 32, 32).shape == (32, 32, 3)  # still read from its mapping
    finally:
        newer.unlink(missing_ok=True)


def test_no_raster_for_a_budget_of_zero(wall):
    ds = LoadedDataset.open(wall)
    raster_path(wall, ds.generation).unlink(missing_ok=True)
    RasterKeeper(0, below_top=0).tend(wall, ds)
    time.sleep(0.2)
    assert ds.coarse is None and not raster_path(wall, ds.generation).exists()


@pytest.fixture(scope="module")
def wide_wall(tmp_path_factory) -> DatasetDir:
    """The awkward wall drawn 8,400 px wide (top level 6), so that ``tiler serve``'s default keeps levels 0-2."""
    base = tmp_path_factory.mktemp("coarse-wide")
    make_awkward_wall(base / "src", width=8400)
    folder = DatasetDir(base / "node", "awkward")
    publish_local(base / "src", folder, store="pyramid")
    return folder


def raster_metric(text: str) -> float | None:
    return next((sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                 if sample.name == "gigatile_coarse_raster_bytes" and sample.labels == {"dataset": "awkward"}), None)


def test_a_served_region_is_the_same_bytes_before_and_after_the_raster(wide_wall, tmp_path):
    host = "127.0.0.1"
    ds = LoadedDataset.open(wide_wall)
    g, path = ds.geometry, raster_path(wide_wall, ds.generation)
    z = g.top - 4
    assert [level.z for level in plan_levels(g, ds.overview_level, 512 << 20)] == list(range(z + 1))
    w, h = g.level_size(z)
    f = g.factor(z)
    urls = [f"/iiif/3/awkward/{x * f},{y * f},{min(300, w - x) * f},{min(40, h - y) * f}/"
            f"{min(300, w - x)},{min(40, h - y)}/0/default.jpg" for x, y in ((0, 0), (37, 11), (w - 301, h - 30))]
    urls += ["/iiif/3/awkward/full/max/0/default.png", f"/iiif/3/awkward/full/{w},/0/default.png",
             f"/iiif/3/awkward/full/{w // 3},/90/gray.png"]
    answers = []
    for with_raster in (False, True):
        extra = () if with_raster else ("--coarse-raster-mb", "0")
        path.unlink(missing_ok=True)
        port = free_port()
        server = start_tiler_serve(wide_wall.root, "awkward", host, port, tmp_path / f"serve-{len(answers)}.log",
                                   "--workers", "1", "--iiif-cache-mb", "0", *extra)
        try:
            if with_raster:
                wait_for(path.is_file, 30, "the coarse raster")
            else:
                time.sleep(0.5)
                assert not path.exists()
            with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as client:
                answers.append([client.get(url).raise_for_status().content for url in urls])
                shown = path.stat().st_size if with_raster else 0
                wait_for(lambda expected=shown: raster_metric(client.get("/metrics").text) == expected, 10,
                         f"the raster's size in /metrics ({shown})")
        finally:
            server.stop()
    assert answers[0] == answers[1]


def test_a_cache_folder_that_cannot_be_made_leaves_regions_decoding(wall, caplog):
    ds = LoadedDataset.open(wall)
    cache = raster_path(wall, ds.generation).parent
    moved = cache.with_name("cache-moved")
    cache.rename(moved)
    cache.write_bytes(b"not a folder")  # mkdir fails as on a read-only or broken disk
    try:
        keeper = RasterKeeper(1024, below_top=0)
        keeper.tend(wall, ds)
        keeper.tend(wall, ds)
        assert ds.coarse is None
        assert sum("coarse raster not built" in r.message for r in caplog.records) == 1  # said once, not each tend
        assert ds.render_level_window(0, 0, 0, 64, 64).shape == (64, 64, 3)
    finally:
        cache.unlink()
        moved.rename(cache)
