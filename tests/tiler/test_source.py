"""Validation of the source format: every fault names the file and row and says what to fix."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tiler.errors import TilerError
from tiler.source import load_source


def _folder(tmp_path, rows, canvas=None):
    (tmp_path / "canvas.json").write_text(json.dumps(canvas or {"width": 1000, "height": 800,
                                                                 "background": "#112233"}))
    Image.new("RGB", (10, 20), "red").save(tmp_path / "a.png")
    (tmp_path / "broken.jpg").write_bytes(b"this is not an image")
    (tmp_path / "items.csv").write_text("id,x,y,width,height,image\n" + "".join(r + "\n" for r in rows))
    return tmp_path


def test_valid_source_loads_in_order(tmp_path):
    source = load_source(_folder(tmp_path, ["a,0,0,10,20,a.png", "b,-5,790,100,100,a.png"]))
    assert [i.id for i in source.items] == ["a", "b"] and [i.order for i in source.items] == [0, 1]
    assert source.canvas.background == (0x11, 0x22, 0x33)
    assert len(source.image_sha256) == 1


@pytest.mark.parametrize(("row", "message"), [
    ("a,0,0,10,20,missing.png", "row 2 column 6: image 'missing.png' is missing"),
    ("a,0,0,10,20,broken.jpg", "row 2 column 6: image 'broken.jpg' is not readable"),
    ("a,0,0,ten,20,a.png", "row 2: width must be a whole number"),
    ("a,0,0,-10,20,a.png", "row 2: width must be positive"),
    ("a,0,0,10,0,a.png", "row 2: height must be positive"),
    ("a,zero,0,10,20,a.png", "row 2: x must be a whole number"),
    ("a,0,0,10,20,../outside.png", "must be a path inside the source folder"),
    ("a,0,0,10,20", "expected 6 columns"),
    ("a b,0,0,10,20,a.png", "id 'a b'"),
])
def test_bad_row_is_named(tmp_path, row, message):
    with pytest.raises(TilerError, match="items.csv row"):
        try:
            load_source(_folder(tmp_path, [row]))
        except TilerError as exc:
            assert message in str(exc), str(exc)
            raise


def test_duplicate_id_names_the_second_row(tmp_path):
    with pytest.raises(TilerError, match=r"row 3: duplicate id 'a'"):
        load_source(_folder(tmp_path, ["a,0,0,10,20,a.png", "a,5,5,10,20,a.png"]))


@pytest.mark.parametrize("canvas", [
    {"width": 0, "height": 10, "background": "#000000"},
    {"width": 10, "height": -1, "background": "#000000"},
    {"width": 10, "height": 10, "background": "brown"},
    {"width": "10", "height": 10, "background": "#000000"},
])
def test_empty_or_malformed_canvas(tmp_path, canvas):
    with pytest.raises(TilerError, match="canvas.json"):
        load_source(_folder(tmp_path, ["a,0,0,10,20,a.png"], canvas))


def test_missing_files_and_header(tmp_path):
    with pytest.raises(TilerError, match="not a folder"):
        load_source(tmp_path / "nope")
    _folder(tmp_path, ["a,0,0,10,20,a.png"])
    (tmp_path / "items.csv").write_text("id,left,top,w,h,img\n")
    with pytest.raises(TilerError, match="header must start"):
        load_source(tmp_path)
    (tmp_path / "items.csv").unlink()
    with pytest.raises(TilerError, match="items.csv: missing"):
        load_source(tmp_path)
