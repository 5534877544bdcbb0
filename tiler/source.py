"""The dataset source format a user brings, and its validation.

A source folder holds ``canvas.json`` (``{"width", "height", "background": "#rrggbb"}``),
``items.csv`` (``id,x,y,width,height,image``; image paths relative to the folder) and the images.
Each image is scaled to exactly its rectangle; later rows are drawn over earlier ones; what falls
outside the canvas is clipped. ``items.csv`` may carry metadata columns after ``image``, named
``[a-z][a-z0-9_]*``: each item's metadata (title, author, url, ...).

The folder is untrusted: no path may leave it (links are resolved first), images and the canvas are
bounded in pixels and bytes (``Limits``), and every fault is one ``InvalidSource`` line naming the file,
the row and the column.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyvips

from gigaformat.canvas import MAX_SIDE, Canvas
from gigaformat.digests import file_sha256
from gigaformat.errors import FormatError
from gigaformat.names import ITEM_ID_RULE, is_item_id
from tiler.errors import InvalidSource

log = logging.getLogger(__name__)

COLUMNS = ("id", "x", "y", "width", "height", "image")
META_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_META_COLUMNS = 64
MAX_META_VALUE = 4096  # characters of one metadata cell
MAX_FIELD = 1 << 20  # characters of any CSV field (Python's csv stops at 128 KB with a bare error)


@dataclass(frozen=True)
class Limits:
    """Bounds on what a source may ask for (``tiler publish`` flags); a source beyond them is refused."""

    image_pixels: int = 200_000_000  # decoded pixels of one image file (a 100000x100000 PNG is 10^10)
    item_pixels: int = 64_000_000  # pixels of one item's rectangle (what is decoded and kept per image)
    canvas_pixels: int = 2_000_000_000_000  # 2000 gigapixels
    image_bytes: int = 256 << 20  # bytes of one image file


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class SourceItem:
    """One row of items.csv: ``order`` is its 0-based data row, the drawing order."""

    id: str
    order: int
    x: int
    y: int
    width: int
    height: int
    image: str  # path relative to the source folder, POSIX form
    line: int = 0  # line number in items.csv, for messages
    meta: tuple[tuple[str, str], ...] = ()  # (column, value) of its non-empty metadata cells


@dataclass(frozen=True)
class Source:
    root: Path
    canvas: Canvas
    items: list[SourceItem]
    image_sha256: dict[str, str]  # image path -> sha256 of the file's bytes
    meta_columns: tuple[str, ...] = ()  # items.csv's metadata columns, in order

    def image_path(self, image: str) -> Path:
        return self.root / image


def load_source(root: Path, limits: Limits | None = None) -> Source:
    """Read and validate a source folder; raise InvalidSource naming the file, row and column of any fault."""
    limits = limits or DEFAULT_LIMITS
    root = Path(root)
    if not root.is_dir():
        raise InvalidSource(f"{root}: not a folder (expected canvas.json, items.csv and the images)")
    canvas = _load_canvas(_inside(root, "canvas.json", f"{root}"))
    if canvas.width * canvas.height > limits.canvas_pixels:
        raise InvalidSource(f"{root / 'canvas.json'}: the canvas has {canvas.width * canvas.height:,} pixels, more "
                            f"than the {limits.canvas_pixels:,} allowed (--max-canvas-gigapixels)")
    meta_columns, items = _load_items(_inside(root, "items.csv", f"{root}"), limits)
    image_sha256 = _check_images(root, items, limits)
    log.info("source loaded root=%s items=%d images=%d meta_columns=%d", root, len(items), len(image_sha256),
             len(meta_columns))
    return Source(root, canvas, items, image_sha256, meta_columns)


def _inside(root: Path, relative: str, where: str) -> Path:
    """``root/relative`` if, links resolved, it lies inside ``root``; InvalidSource otherwise."""
    path = root / relative
    try:
        resolved = path.resolve(strict=False)
        base = root.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise InvalidSource(f"{where}: {relative!r} cannot be resolved ({exc})") from None
    if resolved != base and base not in resolved.parents:
        raise InvalidSource(f"{where}: {relative!r} leads outside the source folder (to {resolved}); "
                            "every file must lie inside it")
    return path


def _load_canvas(path: Path) -> Canvas:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidSource(f"{path}: missing (the canvas: width, height, background)") from None
    except (OSError, ValueError) as exc:
        raise InvalidSource(f"{path}: not readable JSON ({exc})") from None
    try:
        return Canvas.from_json(doc, str(path))
    except FormatError as exc:
        raise InvalidSource(str(exc)) from None


def _load_items(path: Path, limits: Limits) -> tuple[tuple[str, ...], list[SourceItem]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidSource(f"{path}: missing (columns {','.join(COLUMNS)}, then any metadata)") from None
    except OSError as exc:
        raise InvalidSource(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        row = data[:exc.start].count(b"\n") + 1
        raise InvalidSource(f"{path} row {row}: not UTF-8 (byte {data[exc.start]:#04x})") from None
    csv.field_size_limit(MAX_FIELD)
    reader = csv.reader(io.StringIO(text, newline=""))
    items: list[SourceItem] = []
    seen: set[str] = set()
    try:
        meta_columns = _header(next(reader, None), path)
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            item = _parse_row(row, len(items), line, f"{path} row {line}", meta_columns, limits)
            if item.id in seen:
                raise InvalidSource(f"{path} row {line}: duplicate id {item.id!r}")
            seen.add(item.id)
            items.append(item)
    except csv.Error as exc:
        raise InvalidSource(f"{path} row {reader.line_num}: not valid CSV ({exc})") from None
    return meta_columns, items


def _header(header: list[str] | None, path: Path) -> tuple[str, ...]:
    """The metadata columns after the six required ones; InvalidSource for any other header."""
    names = tuple(h.strip() for h in header) if header else ()
    if names[:len(COLUMNS)] != COLUMNS:
        raise InvalidSource(f"{path}: header must start '{','.join(COLUMNS)}', got {header!r}")
    meta = names[len(COLUMNS):]
    for n, name in enumerate(meta, start=len(COLUMNS) + 1):
        if not META_NAME.match(name) or name in COLUMNS or meta.count(name) > 1:
            raise InvalidSource(f"{path} column {n}: metadata column {name!r} must be a unique name of "
                                "[a-z][a-z0-9_]*, at most 63 characters, not one of the six required")
    if len(meta) > MAX_META_COLUMNS:
        raise InvalidSource(f"{path}: {len(meta)} metadata columns, at most {MAX_META_COLUMNS}")
    return meta


def _parse_row(row: list[str], order: int, line: int, where: str, meta_columns: tuple[str, ...],
               limits: Limits) -> SourceItem:
    if len(row) != len(COLUMNS) + len(meta_columns):
        raise InvalidSource(f"{where}: expected {len(COLUMNS) + len(meta_columns)} columns (as the header), "
                            f"got {len(row)}")
    item_id, *numbers, image = (cell.strip() for cell in row[:len(COLUMNS)])
    if not is_item_id(item_id):
        raise InvalidSource(f"{where}: id {item_id!r} must be {ITEM_ID_RULE}")
    values = []
    for name, text in zip(("x", "y", "width", "height"), numbers, strict=True):
        try:
            value = int(text)
        except ValueError:
            raise InvalidSource(f"{where}: {name} must be a whole number, got {text!r}") from None
        if abs(value) > MAX_SIDE:
            raise InvalidSource(f"{where}: {name} = {value} is out of range (|{name}| <= {MAX_SIDE})")
        values.append(value)
    x, y, width, height = values
    for name, value in (("width", width), ("height", height)):
        if value <= 0:
            raise InvalidSource(f"{where}: {name} must be positive, got {value}")
    if width * height > limits.item_pixels:
        raise InvalidSource(f"{where}: the item is {width}x{height} = {width * height:,} pixels, more than the "
                            f"{limits.item_pixels:,} allowed for one item (--max-item-megapixels)")
    meta = []
    for n, (name, cell) in enumerate(zip(meta_columns, row[len(COLUMNS):], strict=True), start=len(COLUMNS) + 1):
        value = cell.strip()
        if len(value) > MAX_META_VALUE:
            raise InvalidSource(f"{where} column {n} ({name}): {len(value)} characters, at most {MAX_META_VALUE}")
        if value:
            meta.append((name, value))
    return SourceItem(item_id, order, x, y, width, height, _safe_image_path(image, where), line, tuple(meta))


def _safe_image_path(image: str, where: str) -> str:
    path = PurePosixPath(image.replace("\\", "/"))
    if not image or path.is_absolute() or ".." in path.parts:
        raise InvalidSource(f"{where}: image {image!r} must be a path inside the source folder")
    return str(path)


def _check_images(root: Path, items: list[SourceItem], limits: Limits) -> dict[str, str]:
    first_row: dict[str, int] = {}
    for item in items:
        first_row.setdefault(item.image, item.line)
    hashes: dict[str, str] = {}
    for image, row in first_row.items():
        where = f"{root / 'items.csv'} row {row} column 6"
        path = _inside(root, image, where)
        if not path.is_file():
            raise InvalidSource(f"{where}: image {image!r} is missing (or not a file)")
        size = path.stat().st_size
        if size > limits.image_bytes:
            raise InvalidSource(f"{where}: image {image!r} has {size:,} bytes, more than the {limits.image_bytes:,} "
                                "allowed")
        try:
            header = pyvips.Image.new_from_file(str(path), access="sequential")
        except pyvips.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown format"
            raise InvalidSource(f"{where}: image {image!r} is not readable ({reason})") from None
        if header.width * header.height > limits.image_pixels:
            raise InvalidSource(f"{where}: image {image!r} is {header.width}x{header.height} = "
                                f"{header.width * header.height:,} pixels, more than the {limits.image_pixels:,} "
                                "allowed (--max-image-megapixels)")
        hashes[image] = file_sha256(path)
    return hashes


def image_rows(source: Source) -> dict[str, int]:
    """Each image's first row in items.csv (for messages about the image)."""
    rows: dict[str, int] = {}
    for item in source.items:
        rows.setdefault(item.image, item.line)
    return rows


