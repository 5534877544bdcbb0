"""Tests for tiler.generate: the synthetic covers wall in the dataset source format."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from tiler.errors import TilerError
from tiler.generate import WallSummary, canvas_size, generate_wall


def read_items(folder: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (folder / "items.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def small_wall(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WallSummary]:
    out = tmp_path_factory.mktemp("wall") / "covers"
    return out, generate_wall(out, gigapixels=0.05, unique=12, seed=7)


def test_canvas_json_describes_the_wall(small_wall: tuple[Path, WallSummary]) -> None:
    out, summary = small_wall
    canvas = json.loads((out / "canvas.json").read_text())
    assert set(canvas) == {"width", "height", "background"}
    assert (canvas["width"], canvas["height"]) == (summary.width, summary.height)
    assert canvas["width"] * canvas["height"] >= 0.05e9
    assert 1.3 < canvas["width"] / canvas["height"] < 1.7
    assert re.fullmatch(r"#[0-9a-f]{6}", canvas["background"])


def test_items_csv_rows_are_integers_inside_the_canvas(small_wall: tuple[Path, WallSummary]) -> None:
    out, summary = small_wall
    header, rows = read_items(out)
    assert header == ["id", "x", "y", "width", "height", "image", "title", "author", "category", "url"]
    assert len(rows) == summary.items > 50
    assert len({row["id"] for row in rows}) == len(rows)
    for row in rows:
        x, y, w, h = (int(row[k]) for k in ("x", "y", "width", "height"))
        assert 0 <= x <= x + w <= summary.width and 0 <= y <= y + h <= summary.height
        assert 450 <= w <= 800 and 650 <= h <= 1200


def test_every_image_exists_with_its_rows_size(small_wall: tuple[Path, WallSummary]) -> None:
    out, summary = small_wall
    _, rows = read_items(out)
    sizes: dict[str, set[tuple[int, int]]] = {}
    for row in rows:
        sizes.setdefault(row["image"], set()).add((int(row["width"]), int(row["height"])))
    assert len(sizes) == summary.unique <= 12
    assert sorted(p.relative_to(out).as_posix() for p in (out / "covers").iterdir()) == sorted(sizes)
    for image, size in sizes.items():
        with Image.open(out / image) as img:
            assert img.format == "JPEG" and {img.size} == size


def test_same_arguments_give_identical_files(tmp_path: Path) -> None:
    first = generate_wall(tmp_path / "a", gigapixels=0.05, unique=24, seed=3)
    second = generate_wall(tmp_path / "b", gigapixels=0.05, unique=24, seed=3)
    assert (first.items, first.unique) == (second.items, second.unique)
    for name in ("canvas.json", "items.csv", "covers/c0002.jpg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = generate_wall(tmp_path / "c", gigapixels=0.05, unique=24, seed=4)
    assert (tmp_path / "c" / "items.csv").read_bytes() != (tmp_path / "a" / "items.csv").read_bytes()
    assert other.width == first.width


def test_regenerating_into_a_previous_wall_replaces_it(tmp_path: Path) -> None:
    generate_wall(tmp_path, gigapixels=0.05, unique=9, seed=1)
    summary = generate_wall(tmp_path, gigapixels=0.05, unique=2, seed=1)
    assert len(list((tmp_path / "covers").iterdir())) == summary.unique <= 2


def test_half_gigapixel_canvas_holds_enough_pixels(tmp_path: Path) -> None:
    summary = generate_wall(tmp_path / "w", gigapixels=0.5, unique=2)
    assert summary.width * summary.height >= 0.5e9
    assert summary.width % 256 == 0


@pytest.mark.parametrize("gigapixels", [46.0, 0.5, 0.05, 0.001, 3.3])
def test_canvas_size_is_about_three_by_two(gigapixels: float) -> None:
    width, height = canvas_size(gigapixels)
    assert width * height >= gigapixels * 1e9
    assert width * (height - 1) < gigapixels * 1e9 or height == 1
    assert width % 256 == 0


def test_default_wall_is_the_46_gigapixel_one() -> None:
    width, height = canvas_size(46.0)
    assert abs(width - 262_144) < 1024 and abs(height - 175_000) < 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gigapixels": 0}, "gigapixels"),
        ({"gigapixels": -1.0}, "gigapixels"),
        ({"gigapixels": 1001}, "gigapixels"),
        ({"gigapixels": float("nan")}, "gigapixels"),
        ({"unique": 0}, "unique"),
    ],
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(TilerError, match=message):
        generate_wall(tmp_path / "w", **kwargs)
    assert not (tmp_path / "w").exists()


def test_a_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TilerError, match="not empty"):
        generate_wall(tmp_path, gigapixels=0.05, unique=1)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "wall"
    target.write_text("x")
    with pytest.raises(TilerError, match="not a folder"):
        generate_wall(target, gigapixels=0.05, unique=1)
