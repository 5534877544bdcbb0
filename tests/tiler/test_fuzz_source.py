"""Fuzzed source folders (hypothesis): every one either publishes or is refused with one line naming the file
(and for items.csv the row and column), never a traceback, and a refusal leaves the published manifest as it
was. Drawn: canvas.json documents, items.csv headers, rows, cells and metadata (text, bytes that are not
UTF-8, quotes, huge fields), and image files (good, truncated, a header claiming a huge size, noise)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import struct
import zlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gigaformat.manifest import manifest_key
from tiler.cli import main as tiler_main

DS = "fuzzed"
HEADER = ["id", "x", "y", "width", "height", "image"]


def png(width: int, height: int, colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "blue").save(out, "JPEG")
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming width x height, with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


IMAGE_BYTES = st.one_of(
    st.builds(png, st.integers(1, 16), st.integers(1, 16)),
    st.builds(jpeg, st.integers(1, 16), st.integers(1, 16)),
    st.builds(lambda b, n: b[:n], st.builds(jpeg, st.just(16), st.just(16)), st.integers(0, 300)),  # truncated
    st.builds(png_claiming, st.sampled_from([0, 1, 70_000, 100_000, 2 ** 31 - 1]), st.sampled_from([1, 100_000])),
    st.binary(max_size=64),
)
NUMBER = st.one_of(st.integers(-50, 300).map(str), st.sampled_from(["", "0", "-0", "1e3", "1.5", "x", " 7",
                                                                    "99999999999999999999", "٣", "0x10"]))
IDENT = st.one_of(st.from_regex(r"[A-Za-z0-9._:@+-]{1,12}", fullmatch=True),
                  st.text(max_size=6), st.just("a" * 130))
IMAGE_NAME = st.sampled_from(["a.png", "b.jpg", "c.bin", "missing.png", "../outside.png", "/etc/passwd", "",
                              "sub/../a.png", "a.png\x00"])
TEXT = st.one_of(st.text(max_size=20), st.sampled_from(['"', '""', "a,b", "line\nbreak", "x" * 5000]))
META_NAME = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                      st.sampled_from(["Title", "id", "x", "", "1abc", "a b"]))


@st.composite
def sources(draw) -> dict:
    odd = draw(st.integers(0, 9)) >= 7  # mostly a valid canvas, so that the rows and images get read
    canvas = draw(st.one_of(
        st.fixed_dictionaries({"width": st.integers(-5, 400), "height": st.integers(1, 300),
                               "background": st.sampled_from(["#fff", "red", "", "#12345g"])}),
        st.just({"width": 10 ** 7, "height": 10 ** 7, "background": "#000000"}),
        st.dictionaries(st.sampled_from(["width", "height", "background", "extra"]),
                        st.one_of(st.integers(-5, 500), st.text(max_size=5), st.none()), max_size=4),
    ) if odd else st.fixed_dictionaries({"width": st.integers(1, 400), "height": st.integers(1, 300),
                                          "background": st.just("#7a5230")}))
    meta = draw(st.lists(META_NAME if draw(st.integers(0, 3)) == 0 else st.sampled_from(["title", "author"]),
                         max_size=2, unique=True))
    header = HEADER if draw(st.integers(0, 4)) < 4 else draw(st.one_of(st.permutations(HEADER),
                                                                       st.lists(st.sampled_from(HEADER), max_size=7)))
    header = header + meta
    rows = draw(st.lists(st.lists(st.one_of(NUMBER, IDENT, IMAGE_NAME, TEXT), min_size=len(header),
                                  max_size=len(header)), max_size=2 if draw(st.integers(0, 2)) == 0 else 0))
    good = draw(st.lists(st.tuples(IDENT, st.integers(-20, 300), st.integers(-20, 200), st.integers(1, 120),
                                   st.integers(1, 120), st.sampled_from(["a.png", "b.jpg", "c.bin"])), max_size=4))
    cells = [[str(v) for v in row] + ["t"] * len(meta) for row in good] if header == HEADER + meta else []
    raw_tail = b"" if draw(st.integers(0, 3)) < 3 else draw(st.sampled_from([
        b"\xff\xfe bad utf-8\n", b'"unterminated\n', b"\x00\n", b"a," + b"x" * 140_000 + b"\n"]))
    return {"canvas": canvas, "header": header, "rows": cells + rows, "raw_tail": raw_tail,
            "images": {name: draw(IMAGE_BYTES) for name in ("a.png", "b.jpg", "c.bin")}}


def write(folder: Path, source: dict) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "canvas.json").write_text(json.dumps(source["canvas"]))
    for name, data in source["images"].items():
        (folder / name).write_bytes(data)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([source["header"], *source["rows"]])
    (folder / "items.csv").write_bytes(out.getvalue().encode("utf-8", "surrogatepass") + source["raw_tail"])


def run_publish(folder: Path, bucket: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = tiler_main(["publish", str(folder), "--dataset", DS, "--bucket", bucket, "--log-level", "ERROR",
                           "--allow-shrink"])
    return code, err.getvalue()


def test_fuzzed_sources_publish_or_are_refused_in_one_line(s3_env, tmp_path):
    bucket, client = s3_env.name, s3_env.client
    first = tmp_path / "first"
    write(first, {"canvas": {"width": 200, "height": 100, "background": "#102030"}, "header": HEADER,
                  "rows": [["one", "0", "0", "50", "40", "a.png"]], "raw_tail": b"", "images": {"a.png": png(8, 8)}})
    assert run_publish(first, bucket)[0] == 0

    def manifest() -> bytes:
        return client.get_object(Bucket=bucket, Key=manifest_key(DS))["Body"].read()

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(sources())
    def check(source: dict) -> None:
        before = manifest()
        folder = tmp_path / "src"
        write(folder, source)
        code, err = run_publish(folder, bucket)  # an exception other than a refusal escapes here: a failure
        assert "Traceback" not in err
        if code == 0:
            return
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("tiler: error: "), err
        assert any(name in lines[0] for name in ("items.csv", "canvas.json", "a.png", "b.jpg", "c.bin")), err
        assert manifest() == before, lines[0]

    check()
