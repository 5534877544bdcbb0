"""A source folder is untrusted: links out of it, decompression bombs, truncated images, malformed CSV and a
wiped items.csv are refused with one line naming file, row and column, and the published manifest stays."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from gigaformat.manifest import manifest_key
from tiler.errors import InvalidSource
from tiler.generate import generate_wall
from tiler.publish import publish
from tiler.source import Limits, load_source

DS = "hostile"


def write_source(folder: Path, rows: str, canvas: dict | None = None, header_extra: str = "") -> None:
    """canvas.json, one small image (img.png) and items.csv with these rows."""
    (folder / "canvas.json").write_text(json.dumps(canvas or {"width": 1000, "height": 800, "background": "#112233"}))
    Image.new("RGB", (10, 20), "red").save(folder / "img.png")
    (folder / "items.csv").write_text("id,x,y,width,height,image" + header_extra + "\n" + rows)


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height and which holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


@pytest.fixture
def wall(tmp_path: Path) -> Path:
    generate_wall(tmp_path / "wall", gigapixels=0.002, unique=4, seed=2)
    return tmp_path / "wall"


def rows_of(wall: Path) -> list[str]:
    return (wall / "items.csv").read_text().splitlines()


def test_a_link_to_a_file_outside_the_folder_is_refused(wall, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes((wall / rows_of(wall)[1].split(",")[5]).read_bytes())
    (wall / "covers" / "leak.jpg").symlink_to(secret)
    rows = rows_of(wall)
    rows[1] = ",".join([*rows[1].split(",")[:5], "covers/leak.jpg", *rows[1].split(",")[6:]])
    (wall / "items.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(InvalidSource, match=r"items.csv row 2 column 6: 'covers/leak.jpg' leads outside the source"):
        load_source(wall)


def test_a_linked_directory_is_refused(wall, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "c.jpg").write_bytes((wall / rows_of(wall)[1].split(",")[5]).read_bytes())
    (wall / "linked").symlink_to(outside, target_is_directory=True)
    rows = rows_of(wall)
    rows[2] = ",".join([*rows[2].split(",")[:5], "linked/c.jpg", *rows[2].split(",")[6:]])
    (wall / "items.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(InvalidSource, match=r"row 3 column 6: 'linked/c.jpg' leads outside the source folder"):
        load_source(wall)


@pytest.mark.parametrize("side", [100_000, 30_000])
def test_an_image_claiming_too_many_pixels_is_refused_before_decoding(tmp_path, side):
    write_source(tmp_path, "a,0,0,10,20,bomb.png\n")
    png_header_only(tmp_path / "bomb.png", side, side)
    with pytest.raises(InvalidSource, match=r"row 2 column 6: image 'bomb.png'"):
        load_source(tmp_path, Limits(image_pixels=200_000_000))


def test_an_item_too_large_and_a_canvas_too_large_are_refused(tmp_path):
    write_source(tmp_path, "a,0,0,100000,100000,img.png\n")
    with pytest.raises(InvalidSource, match=r"row 2: the item is 100000x100000"):
        load_source(tmp_path)
    write_source(tmp_path, "a,0,0,10,20,img.png\n", canvas={"width": 10_000_000, "height": 10_000_000})
    with pytest.raises(InvalidSource, match=r"canvas.json: the canvas has 100,000,000,000,000 pixels"):
        load_source(tmp_path)


def test_malformed_csv_names_the_row(tmp_path):
    write_source(tmp_path, "a,0,0,10,20,img.png,\"" + "x" * 2_000_000 + "\"\n", header_extra=",title")
    with pytest.raises(InvalidSource, match=r"items.csv row \d+: not valid CSV"):
        load_source(tmp_path)
    write_source(tmp_path, "a,0,0,10,20,img.png\n")
    (tmp_path / "items.csv").write_bytes((tmp_path / "items.csv").read_bytes() + b"b,0,0,10,20,img\xff.png\n")
    with pytest.raises(InvalidSource, match=r"items.csv row 3: not UTF-8 \(byte 0xff\)"):
        load_source(tmp_path)


def test_metadata_columns_are_checked(tmp_path):
    write_source(tmp_path, "a,0,0,10,20,img.png,Harbor\n", header_extra=",Title")
    with pytest.raises(InvalidSource, match=r"items.csv column 7: metadata column 'Title'"):
        load_source(tmp_path)
    write_source(tmp_path, "a,0,0,10,20,img.png," + "y" * 5000 + "\n", header_extra=",title")
    with pytest.raises(InvalidSource, match=r"row 2 column 7 \(title\): 5000 characters"):
        load_source(tmp_path)
    write_source(tmp_path, "a,0,0,10,20,img.png,The Harbor,\n", header_extra=",title,author")
    source = load_source(tmp_path)
    assert source.meta_columns == ("title", "author") and source.items[0].meta == (("title", "The Harbor"),)


def test_hostile_publishes_leave_the_manifest_and_print_one_line(wall, s3_bucket):
    assert publish(wall, DS, s3_bucket.name, s3_bucket.client).generation == 1
    before = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=manifest_key(DS))["Body"].read()

    def cli(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tiler.cli", "publish", str(wall), "--dataset", DS, *extra],
                              env=s3_bucket.env, capture_output=True, text=True, timeout=300)

    header, *rows = rows_of(wall)
    (wall / "items.csv").write_text(header + "\n")  # a typo that wipes the wall
    wiped = cli()
    (wall / "items.csv").write_text("\n".join([header, rows[0]]) + "\n")  # most of it removed
    shrunk = cli()
    (wall / "items.csv").write_text("\n".join([header, *rows]) + "\n")
    image = wall / rows[0].split(",")[5]
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])  # truncated
    truncated = cli("--store", "pyramid")
    for done, says in ((wiped, "no items"), (shrunk, "publishing it would remove"),
                       (truncated, "row 2 column 6: image")):
        assert done.returncode == 1 and says in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    after = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=manifest_key(DS))["Body"].read()
    assert after == before
