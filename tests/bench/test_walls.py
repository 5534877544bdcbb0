"""bench/walls.py: wall specs, and a cached wall in an older format or with other arguments found stale."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import walls
from bench.walls import DATASET, WallSpec
from gigaformat.layout import DatasetDir
from gigaformat.state import STATE_FORMAT, STATE_NAME, dump_gzip_json
from tiler.generate import generate_wall
from tiler.local_publish import publish_local


def test_wall_specs_parse_and_name_their_folders(tmp_path: Path) -> None:
    assert WallSpec.parse("46") == WallSpec(46.0) and WallSpec.parse(" 2d") == WallSpec(2.0, True)
    assert str(WallSpec(0.2, True)) == "0.2d" and WallSpec.parse(str(WallSpec(0.2, True))) == WallSpec(0.2, True)
    assert WallSpec(46.0).name == "46-Gpx" and WallSpec(2.0, True).name == "2-Gpx distinct"
    assert WallSpec(2.0).folder(tmp_path) != WallSpec(2.0, True).folder(tmp_path)
    assert WallSpec(1.0).folder(tmp_path) == tmp_path / "wall-1gpx-seed1"  # the folder cached walls had
    assert walls.wall_stamp(2.0, all_distinct=True)["format"] == STATE_FORMAT


@pytest.fixture(scope="module")
def cached_wall(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WallSpec]:
    """A tiny all-distinct wall cached the way prepare_wall caches it."""
    work, spec = tmp_path_factory.mktemp("work"), WallSpec(0.002, True)
    folder = spec.folder(work)
    generate_wall(folder / "source", spec.gigapixels, seed=1, all_distinct=True)
    publish_local(folder / "source", DatasetDir(folder / "node", DATASET))
    walls.write_json(folder / "stamp.json", walls.wall_stamp(spec.gigapixels, all_distinct=True))
    return work, spec


def test_a_cached_wall_is_reused_while_its_stamp_and_format_hold(cached_wall: tuple[Path, WallSpec],
                                                                 tmp_path: Path) -> None:
    work, spec = cached_wall
    assert spec.is_ready(work)
    assert not WallSpec(spec.gigapixels).is_ready(work)  # the default wall of that size is another folder
    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True)
    stamp = spec.folder(copy) / "stamp.json"
    walls.write_json(stamp, {k: v for k, v in walls.read_json(stamp).items() if k != "format"})  # an older bench
    assert not spec.is_ready(copy)


def test_a_wall_published_in_an_older_format_is_stale(cached_wall: tuple[Path, WallSpec], tmp_path: Path) -> None:
    work, spec = cached_wall
    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True)
    folder = DatasetDir(spec.folder(copy) / "node", DATASET)
    state = folder.generation_dir(folder.current_generation()) / STATE_NAME
    assert walls.published_format_is_current(folder.root)
    state.write_bytes(dump_gzip_json({"format": STATE_FORMAT - 1, "dataset": DATASET, "generation": 1}))
    assert not walls.published_format_is_current(folder.root)
    assert not spec.is_ready(copy)  # stamp and synch.down as before: the format alone makes it stale
