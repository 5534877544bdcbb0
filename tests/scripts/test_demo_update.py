"""scripts/demo_update.py: which covers change (those on screen where the viewer opens), and items.csv kept
as it was written apart from them."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from tiler.generate import generate_wall

from demo_update import START_ZOOM, centre_box, change_covers, rewrite_items


@pytest.fixture(scope="module")
def wall(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wall") / "wall"
    generate_wall(folder, 0.2)
    return folder


def test_the_changed_covers_are_on_screen_at_the_start_view(wall: Path):
    header, *rows = list(csv.reader((wall / "items.csv").open(newline="")))
    canvas = json.loads((wall / "canvas.json").read_text())
    width, height = canvas["width"], canvas["height"]
    before = [list(r) for r in rows]
    picked = change_covers(rows, width, height, random.Random(7))
    assert len(picked) == 12
    changed = [i for i, (a, b) in enumerate(zip(before, rows, strict=True)) if a != b]
    assert sorted(picked) == changed and all(before[i][5] != rows[i][5] for i in changed)  # another image
    x0, y0, x1, y1 = centre_box(width, height)
    # the box is what a 600 x 360 CSS-px viewer shows at the start zoom, around the canvas centre
    assert abs((x1 - x0) * START_ZOOM - 600) <= 1 and abs((y1 - y0) * START_ZOOM - 360) <= 1
    assert abs((x0 + x1) / 2 - width / 2) <= 1 and abs((y0 + y1) / 2 - height / 2) <= 1
    for i in picked:
        x, y, w, h = (int(v) for v in rows[i][1:5])
        assert x0 <= x and x + w <= x1 and y0 <= y and y + h <= y1


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_items_csv_keeps_its_line_endings(tmp_path: Path, ending: str):
    path = tmp_path / "items.csv"
    path.write_bytes(f"id,x,y,width,height,image{ending}a,0,0,10,10,covers/c0.jpg{ending}".encode())
    rewrite_items(path, ["id", "x", "y", "width", "height", "image"], [["a", "0", "0", "10", "10", "covers/c1.jpg"]])
    assert path.read_bytes() == f"id,x,y,width,height,image{ending}a,0,0,10,10,covers/c1.jpg{ending}".encode()
    assert not list(tmp_path.glob("*.tmp"))
