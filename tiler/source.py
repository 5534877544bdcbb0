"""The dataset source format a user brings, and its validation.

A source folder holds ``canvas.json`` (``{"width", "height", "background": "#rrggbb"}``),
``items.csv`` (``id,x,y,width,height,image``; image paths relative to the folder) and the images.
Each image is scaled to exactly its rectangle; later rows are drawn over earlier ones; what falls
outside the canvas is clipped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyvips

from gigaformat.canvas import MAX_SIDE, Canvas
from gigaformat.errors import FormatError
from gigaformat.names import ITEM_ID_RULE, is_item_id
from tiler.errors import InvalidSource

log = logging.getLogger(__name__)

COLUMNS = ("id", "x", "y", "width", "height", "image")


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


@dataclass(frozen=True)
class Source:
    root: Path
    canvas: Canvas
    items: list[SourceItem]
    image_sha256: dict[str, str]  # image path -> sha256 of the file's bytes

    def image_path(self, image: str) -> Path:
        return self.root / image


def load_source(root: Path) -> Source:
    """Read and validate a source folder; raise InvalidSource naming the file and row of any fault."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidSource(f"{root}: not a folder (expected canvas.json, items.csv and the images)")
    canvas = _load_canvas(root / "canvas.json")
    items = _load_items(root / "items.csv")
    image_sha256 = _check_images(root, items)
    log.info("source loaded root=%s items=%d images=%d", root, len(items), len(image_sha256))
    return Source(root, canvas, items, image_sha256)


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


def _load_items(path: Path) -> list[SourceItem]:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise InvalidSource(f"{path}: missing (columns {','.join(COLUMNS)})") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COLUMNS:
            raise InvalidSource(f"{path}: header must be '{','.join(COLUMNS)}', got {header!r}")
        items: list[SourceItem] = []
        seen: set[str] = set()
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            item = _parse_row(row, len(items), line, f"{path} row {line}")
            if item.id in seen:
                raise InvalidSource(f"{path} row {line}: duplicate id {item.id!r}")
            seen.add(item.id)
            items.append(item)
    return items


def _parse_row(row: list[str], order: int, line: int, where: str) -> SourceItem:
    if len(row) != len(COLUMNS):
        raise InvalidSource(f"{where}: expected {len(COLUMNS)} columns ({','.join(COLUMNS)}), got {len(row)}")
    item_id, *numbers, image = (cell.strip() for cell in row)
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
    return SourceItem(item_id, order, x, y, width, height, _safe_image_path(image, where), line)


def _safe_image_path(image: str, where: str) -> str:
    path = PurePosixPath(image.replace("\\", "/"))
    if not image or path.is_absolute() or ".." in path.parts:
        raise InvalidSource(f"{where}: image {image!r} must be a path inside the source folder")
    return str(path)


def _check_images(root: Path, items: list[SourceItem]) -> dict[str, str]:
    first_row: dict[str, int] = {}
    for item in items:
        first_row.setdefault(item.image, item.line)
    hashes: dict[str, str] = {}
    for image, row in first_row.items():
        where = f"{root / 'items.csv'} row {row}"
        path = root / image
        if not path.is_file():
            raise InvalidSource(f"{where}: image {image!r} is missing")
        try:
            pyvips.Image.new_from_file(str(path), access="sequential")
        except pyvips.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown format"
            raise InvalidSource(f"{where}: image {image!r} is not readable ({reason})") from None
        hashes[image] = _sha256_file(path)
    return hashes


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
