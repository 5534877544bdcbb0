"""A deterministic synthetic Zoomii wall, written in the dataset source format.

The wall is wood-coloured bookcases with shelves of book covers. The output folder holds
``canvas.json``, ``items.csv`` (``id,x,y,width,height,image``) and ``covers/c<index>.jpg``;
``items.csv`` is written last, so a folder that has it is complete.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import random
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tiler.errors import TilerError

log = logging.getLogger(__name__)

DEFAULT_UNIQUE = 256
MAX_GIGAPIXELS = 1000.0
JPEG_QUALITY = 88
BACKGROUND = "#7a5230"  # walnut
MARGIN = 48  # wood around the wall and between bookcases
CASE_WIDTH = 8192  # target width of one bookcase
BOARD = 40  # shelf board between two rows of books
GAPS = (4, 14)  # gap between neighbouring books, inclusive range

RGB = tuple[int, int, int]
# (shelf band, weight, height range, width/height range); bands group books of one shelf height
FORMATS = (
    (0, 0.58, (650, 710), (0.66, 0.72)),  # pocket
    (0, 0.06, (650, 710), (0.95, 1.15)),  # picture book
    (1, 0.24, (760, 850), (0.64, 0.70)),  # trade paperback
    (2, 0.08, (940, 1040), (0.62, 0.68)),  # hardcover
    (3, 0.04, (1100, 1200), (0.62, 0.68)),  # large-format hardcover
)
STYLES = ("gradient", "band", "stripes", "frame", "mountains", "dots")
PALETTE: tuple[RGB, ...] = (
    (29, 53, 87), (69, 123, 157), (168, 218, 220), (241, 236, 222), (230, 57, 70), (42, 157, 143),
    (233, 196, 106), (244, 162, 97), (38, 70, 83), (109, 89, 122), (181, 101, 118), (234, 172, 139),
    (53, 80, 112), (255, 183, 3), (2, 48, 71), (58, 90, 64), (156, 102, 68), (24, 24, 28),
    (128, 0, 32), (200, 220, 190),
)
ADJECTIVES = (
    "Silent", "Hidden", "Last", "Crimson", "Golden", "Forgotten", "Distant", "Broken", "Quiet", "Wild",
    "Midnight", "Winter", "Lost", "Burning", "Secret", "Northern", "Glass", "Iron", "Painted", "Endless",
    "Hollow", "Bright", "Paper", "Salt",
)
NOUNS = (
    "Harbor", "Garden", "River", "Kingdom", "Lighthouse", "Orchard", "Library", "Mountain", "Machine",
    "Summer", "Letters", "Island", "Forest", "City", "Shadow", "Voyage", "Compass", "Tide", "Clockmaker",
    "Empire", "Meadow", "Storm", "Atlas", "Bridge",
)
PLACES = ("Kyoto", "Marrakesh", "Orion", "the North", "Seven Seas", "Tomorrow", "Lisbon", "the Deep")
FIRST = ("Ada", "Miles", "Clara", "Jonah", "Iris", "Theo", "Nora", "Felix", "Maya", "Oscar", "Lena", "Hugo")
LAST = (
    "Whitfield", "Okafor", "Lindqvist", "Moreau", "Castellanos", "Hart", "Nakamura", "Brennan", "Sato",
    "Albright", "Kowalski", "Ferreira", "Ashby", "Quinn", "Delacroix", "Mbeki",
)
CATEGORIES = ("Fiction", "Mystery", "Science", "History", "Travel", "Poetry", "Children", "Art", "Cooking",
              "Biography", "Nature", "Philosophy")
BOOK_URL = "https://books.example.com/item/"  # example.com: reserved for documentation, never a real shop
TITLES = ("The {a} {n}", "{a} {n}", "The {n} of {p}", "A {n} for {f}", "{f} and the {a} {n}")
_PREVIOUS = {"canvas.json", "items.csv", "items.csv.tmp", "covers"}
_COVER_NAME = re.compile(r"c\d+\.jpg")


@dataclass(frozen=True)
class WallSummary:
    """What ``generate_wall`` made: canvas size in px, item count, distinct covers used, wall time."""

    width: int
    height: int
    items: int
    unique: int
    seconds: float


@dataclass(frozen=True)
class CoverSpec:
    """Everything needed to draw one cover; a pure function of (seed, index)."""

    index: int
    band: int
    width: int
    height: int
    title: str
    author: str
    style: str
    colors: tuple[RGB, RGB, RGB]
    detail_seed: int


def canvas_size(gigapixels: float) -> tuple[int, int]:
    """Canvas (width, height) of about 3:2 holding at least ``gigapixels * 1e9`` pixels."""
    pixels = math.ceil(gigapixels * 1e9)
    width = max(256, round(math.sqrt(pixels * 1.5) / 256) * 256)
    return width, max(1, -(-pixels // width))


def cover_spec(seed: int, index: int) -> CoverSpec:
    """The deterministic design of cover ``index`` of the wall made with ``seed``."""
    rng = random.Random(f"gigatile-cover:{seed}:{index}")
    band, _, (h_lo, h_hi), (a_lo, a_hi) = rng.choices(FORMATS, weights=[f[1] for f in FORMATS])[0]
    height = rng.randint(h_lo, h_hi)
    width = min(800, max(450, round(height * rng.uniform(a_lo, a_hi))))
    title, author = book_text(rng)
    colors = tuple(rng.sample(PALETTE, 3))
    return CoverSpec(index, band, width, height, title, author, rng.choice(STYLES), colors,
                     rng.getrandbits(32))


def _coined(count: int) -> tuple[str, ...]:
    """``count`` made-up words (Varen, Thelosmir, ...), the same every time: a catalogue's long tail."""
    rng = random.Random("gigatile-words")
    onsets = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "dr",
              "gr", "kr", "st", "th")
    vowels = ("a", "e", "i", "o", "u", "ae", "ei", "ou")
    codas = ("n", "r", "s", "l", "th", "nd", "rk", "st", "m", "x")
    found: dict[str, None] = {}
    while len(found) < count:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(1, 3))) + rng.choice(codas)
        found.setdefault(word.capitalize(), None)
    return tuple(found)


COINED = _coined(6000)
# A few words common, most rare, as in titles; cumulative, so a draw is a bisection, not a sum of 6,000 weights.
CUM_ZIPF = list(itertools.accumulate(1.0 / (rank + 1) ** 0.9 for rank in range(len(COINED))))


def book_text(rng: random.Random) -> tuple[str, str]:
    """A title and an author: the familiar words of the lists, and a long tail of coined ones."""
    def noun() -> str:
        return rng.choice(NOUNS) if rng.random() < 0.5 else rng.choices(COINED, cum_weights=CUM_ZIPF)[0]

    words = {"a": rng.choice(ADJECTIVES), "n": noun(), "p": rng.choice(PLACES) if rng.random() < 0.5 else
             rng.choices(COINED, cum_weights=CUM_ZIPF)[0], "f": rng.choice(FIRST)}
    title = rng.choice(TITLES).format(**words)
    if title.startswith("A ") and title[2] in "AEIOU":
        title = "An" + title[1:]
    last = rng.choice(LAST) if rng.random() < 0.3 else rng.choices(COINED, cum_weights=CUM_ZIPF)[0]
    return title, f"{rng.choice(FIRST)} {last}"


# --- cover pixels (pure: spec in, image out) ---------------------------------------------------


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _ink(background: RGB) -> RGB:
    """Dark or light text, whichever reads better on ``background``."""
    luma = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (22, 20, 24) if luma > 140 else (250, 246, 236)


def _shade(color: RGB, factor: float) -> RGB:
    return tuple(min(255, int(c * factor)) for c in color)


def _background(spec: CoverSpec) -> Image.Image:
    w, h = spec.width, spec.height
    c0, c1, _ = (np.asarray(c, np.float32) for c in spec.colors)
    if spec.style in ("gradient", "mountains"):
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        arr = np.broadcast_to(c0 * (1 - t) + c1 * t, (h, w, 3))
    elif spec.style == "stripes":
        yy, xx = np.ogrid[:h, :w]
        arr = np.where(((xx + yy) // (w // 9) % 2 == 0)[..., None], c0, c1)
    else:
        arr = np.broadcast_to(c0, (h, w, 3))
    return Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))


def _decorate(draw: ImageDraw.ImageDraw, spec: CoverSpec, rng: random.Random) -> tuple[int, int, int, int]:
    """Draw the style's decoration; return the box (x0, y0, x1, y1) where the title goes."""
    w, h = spec.width, spec.height
    c0, c1, c2 = spec.colors
    title_box = (w // 12, h // 14, w - w // 12, h * 2 // 5)
    if spec.style == "gradient":
        r = w // rng.randint(4, 6)
        cx, cy = w // 2, h * 3 // 5
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=c2)
    elif spec.style == "band":
        top, bottom = h // 5, h // 2
        draw.rectangle((0, top, w, bottom), fill=c1)
        for y in (top - 14, bottom + 6):
            draw.rectangle((w // 10, y, w - w // 10, y + 8), fill=c2)
        title_box = (w // 12, top + h // 40, w - w // 12, bottom - h // 40)
    elif spec.style in ("stripes", "dots"):
        if spec.style == "dots":
            step = w // rng.randint(6, 9)
            for y in range(step // 2, h, step):
                for x in range(step // 2, w, step):
                    draw.ellipse((x - step // 5, y - step // 5, x + step // 5, y + step // 5), fill=c1)
        title_box = (w // 8, h // 6, w - w // 8, h // 2)
        draw.rectangle(title_box, fill=c2, outline=_ink(c2), width=5)
        title_box = (title_box[0] + 16, title_box[1] + 16, title_box[2] - 16, title_box[3] - 16)
    elif spec.style == "frame":
        for inset, width in ((w // 16, 10), (w // 16 + 22, 4)):
            draw.rectangle((inset, inset, w - inset, h - inset), outline=c2, width=width)
        cx, cy, r = w // 2, h * 3 // 5, w // 7
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=c2)
        title_box = (w // 6, h // 8, w - w // 6, h * 2 // 5)
    else:  # mountains
        for shade, base in ((0.8, h * 3 // 4), (0.55, h * 5 // 6)):
            peaks = [(0, h)] + [(x, base - rng.randint(h // 12, h // 4)) for x in range(0, w + 1, w // 3)]
            draw.polygon(peaks + [(w, h)], fill=_shade(c2, shade))
    return title_box


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _draw_text(draw: ImageDraw.ImageDraw, spec: CoverSpec, box: tuple[int, int, int, int]) -> None:
    """Title fitted into ``box`` as large as it goes; author line near the bottom."""
    x0, y0, x1, y1 = box
    panel = spec.colors[2] if spec.style in ("stripes", "dots") else spec.colors[int(spec.style == "band")]
    size = min((x1 - x0) // 3, (y1 - y0) // 2) // 4 * 4
    while True:
        font = _font(size)
        lines = _wrap(draw, spec.title, font, x1 - x0)
        fits = all(draw.textlength(line, font=font) <= x1 - x0 for line in lines)
        if size <= 24 or (fits and len(lines) * size * 1.15 <= y1 - y0):
            break
        size -= 4
    y = (y0 + y1) // 2 - round(len(lines) * size * 1.15) // 2
    for line in lines:
        draw.text(((x0 + x1) // 2, y), line, font=font, fill=_ink(panel), anchor="ma")
        y += round(size * 1.15)
    _draw_author(draw, spec)


def _draw_author(draw: ImageDraw.ImageDraw, spec: CoverSpec) -> None:
    """The author's name near the bottom, on a label where the background is patterned."""
    c0, c1, c2 = spec.colors
    w, h = spec.width, spec.height
    font = _font(max(24, w // 13 // 4 * 4))
    name = spec.author.upper()
    size = font.size
    while draw.textlength(name, font=font) > w * 0.8 and size > 16:
        size -= 4
        font = _font(size)
    by_line = {"gradient": c1, "mountains": _shade(c2, 0.55), "stripes": c2, "dots": c2}.get(spec.style, c0)
    cx, cy = w // 2, h - h // 10
    if spec.style in ("stripes", "dots"):
        half = round(draw.textlength(name, font=font)) // 2 + size // 2
        draw.rectangle((cx - half, cy - size, cx + half, cy + size), fill=c2)
    draw.text((cx, cy), name, font=font, fill=_ink(by_line), anchor="mm")


def draw_cover(spec: CoverSpec) -> Image.Image:
    """The RGB cover of ``spec``, exactly ``spec.width`` × ``spec.height`` pixels."""
    img = _background(spec)
    draw = ImageDraw.Draw(img)
    box = _decorate(draw, spec, random.Random(spec.detail_seed))
    _draw_text(draw, spec, box)
    spine = max(6, spec.width // 28)  # a darker strip along the left edge reads as a book's hinge
    arr = np.asarray(img).copy()
    arr[:, :spine] = (arr[:, :spine] * 0.7).astype(np.uint8)
    arr[:, spine : spine + 2] = (arr[:, spine : spine + 2] * 0.45).astype(np.uint8)
    return Image.fromarray(arr)


# --- layout (pure: sizes in, placements out) ---------------------------------------------------


def _case_spans(width: int) -> list[tuple[int, int]]:
    """(x0, x1) of each bookcase, ``MARGIN`` of wood around and between them."""
    count = max(1, round(width / CASE_WIDTH))
    inner = (width - (count + 1) * MARGIN) // count
    if inner <= 0:
        return []
    return [(MARGIN + i * (inner + MARGIN), MARGIN + i * (inner + MARGIN) + inner) for i in range(count)]


def _fill_shelf(span: tuple[int, int], bottom: int, members: np.ndarray, widths: np.ndarray,
                heights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Books standing on one shelf between span's ends: rows of (cover, x, y)."""
    x0, x1 = span
    k = (x1 - x0) // int(widths[members].min()) + 1
    picks = rng.choice(members, size=k)
    step = widths[picks] + rng.integers(GAPS[0], GAPS[1] + 1, size=k)
    starts = x0 + np.concatenate(([0], np.cumsum(step)[:-1]))
    count = int(np.searchsorted(starts + widths[picks], x1, side="right"))
    picks, starts = picks[:count], starts[:count]
    return np.column_stack([picks, starts, bottom - heights[picks]])


def place_books(width: int, height: int, specs: list[CoverSpec], seed: int) -> np.ndarray:
    """Shelves of books filling the canvas: an int64 array of rows (cover index, x, y).

    Each shelf holds books of one height band, bottom-aligned; every book lies inside the canvas.
    """
    rng = np.random.default_rng(seed)
    widths = np.array([s.width for s in specs], np.int64)
    heights = np.array([s.height for s in specs], np.int64)
    bands = np.array([s.band for s in specs])
    members = {int(b): np.flatnonzero(bands == b) for b in np.unique(bands)}
    pitch = {b: int(heights[m].max()) for b, m in members.items()}
    spans, rows, y = _case_spans(width), [], MARGIN
    while fitting := [b for b in members if y + pitch[b] <= height - MARGIN]:
        weights = np.array([len(members[b]) for b in fitting], np.float64)
        band = fitting[int(rng.choice(len(fitting), p=weights / weights.sum()))]
        rows.extend(_fill_shelf(s, y + pitch[band], members[band], widths, heights, rng) for s in spans)
        y += pitch[band] + BOARD
    return np.concatenate(rows) if rows else np.empty((0, 3), np.int64)


# --- files ---------------------------------------------------------------------------------------


def _check_args(gigapixels: float, unique: int) -> None:
    if not 0 < gigapixels <= MAX_GIGAPIXELS:
        raise TilerError(f"gigapixels must be > 0 and <= {MAX_GIGAPIXELS:g}, got {gigapixels!r}")
    if unique < 1:
        raise TilerError(f"unique must be at least 1 distinct cover, got {unique!r}")


def _prepare_out(out: Path) -> None:
    """Make ``out`` an empty-for-us folder; a previous generated wall there is replaced."""
    if out.exists() and not out.is_dir():
        raise TilerError(f"{out} exists and is not a folder; choose a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        names = {p.name for p in out.iterdir()}
        covers = out / "covers"
        ours = names <= _PREVIOUS and "canvas.json" in names and covers.is_dir() and all(
            _COVER_NAME.fullmatch(p.name) and p.is_file() for p in covers.iterdir())
        if not ours:
            raise TilerError(f"{out} is not empty and does not hold a generated wall; "
                             "choose a new or empty folder")
        log.info("replacing previous wall out=%s", out)
        shutil.rmtree(covers)
        for name in names - {"covers"}:
            (out / name).unlink()
    (out / "covers").mkdir(parents=True, exist_ok=True)


def _write_cover(job: tuple[CoverSpec, str]) -> int:
    spec, path = job
    draw_cover(spec).save(path, "JPEG", quality=JPEG_QUALITY)
    return spec.index


def _write_covers(jobs: list[tuple[CoverSpec, str]], progress: Progress) -> None:
    task = progress.add_task("covers", total=len(jobs))
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                  max(1, len(jobs) // 8))  # a pool costs more than it saves for a handful of covers
    if workers == 1:
        done = map(_write_cover, jobs)
        for _ in done:
            progress.advance(task)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(_write_cover, jobs, chunksize=4):
            progress.advance(task)


def category_of(x: int, width: int) -> str:
    """The category of the bookcase at canvas column ``x`` (one per bookcase, in turn)."""
    count = max(1, round(width / CASE_WIDTH))
    return CATEGORIES[min(count - 1, max(0, x * count // max(width, 1))) % len(CATEGORIES)]


def _write_items(path: Path, placed: np.ndarray, specs: list[CoverSpec], names: list[str], width: int,
                 distinct_metadata: bool = False, seed: int = 1) -> None:
    """items.csv: placements, then the metadata drawn on each cover (title, author) or, with
    ``distinct_metadata``, a title and author of each item's own, its bookcase's category and a link."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "x", "y", "width", "height", "image", "title", "author", "category", "url"])
        for i, (c, x, y) in enumerate(placed.tolist(), start=1):
            spec = specs[c]
            title, author = book_text(random.Random(f"gigatile-book:{seed}:{i}")) if distinct_metadata else \
                (spec.title, spec.author)
            writer.writerow([i, x, y, spec.width, spec.height, names[c], title, author, category_of(x, width),
                             f"{BOOK_URL}{i}"])
    tmp.replace(path)


def distinct_covers(placed: np.ndarray, specs: list[CoverSpec], seed: int) -> tuple[np.ndarray, list[CoverSpec]]:
    """Give every placed book a cover of its own: the same size and shelf as the one it was laid out with,
    its own title, author, colours and design. Returns the placements renumbered and the new specs."""
    own = [replace(cover_spec(seed, len(specs) + n), index=n, band=specs[c].band, width=specs[c].width,
                   height=specs[c].height) for n, c in enumerate(placed[:, 0].tolist())]
    renumbered = placed.copy()
    renumbered[:, 0] = np.arange(len(placed))
    return renumbered, own


def generate_wall(out: Path, gigapixels: float = 46.0, unique: int = DEFAULT_UNIQUE, seed: int = 1,
                  progress: bool = False, all_distinct: bool = False, distinct_metadata: bool = False) -> WallSummary:
    """Write a synthetic covers wall of at least ``gigapixels * 1e9`` px into the folder ``out``.

    ``unique`` distinct covers (each with its own natural size) are reused across the wall, drawn with
    replacement; with ``all_distinct`` every item has a cover of its own (as in a real bookstore), and
    ``unique`` only sets how many sizes the layout draws from. With ``distinct_metadata`` every item gets a
    title and author of its own even where its cover is shared (a catalogue of distinct books for search,
    at sizes where drawing every cover would take hours; the shared cover shows another title). The same
    arguments give byte-identical files. ``out`` must be new, empty or a previous generated wall (replaced).
    Raises TilerError for bad arguments or an unusable ``out``.
    """
    started = time.perf_counter()
    _check_args(gigapixels, unique)
    out = Path(out)
    _prepare_out(out)
    width, height = canvas_size(gigapixels)
    specs = [cover_spec(seed, i) for i in range(unique)]
    placed = place_books(width, height, specs, seed)
    if not len(placed):
        log.warning("canvas too small for a shelf of books width=%d height=%d", width, height)
    if all_distinct:
        placed, specs = distinct_covers(placed, specs, seed)
    digits = max(4, len(str(len(specs) - 1)))
    names = [f"covers/c{i:0{digits}d}.jpg" for i in range(len(specs))]
    used = np.unique(placed[:, 0]).tolist()
    canvas = {"width": width, "height": height, "background": BACKGROUND}
    (out / "canvas.json").write_text(json.dumps(canvas) + "\n", encoding="ascii")
    columns = [TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, disable=not progress) as bar:
        _write_covers([(specs[i], str(out / names[i])) for i in used], bar)
        _write_items(out / "items.csv", placed, specs, names, width, distinct_metadata, seed)
    summary = WallSummary(width, height, len(placed), len(used), time.perf_counter() - started)
    log.info("wall generated out=%s width=%d height=%d items=%d unique=%d seconds=%.1f",
             out, width, height, summary.items, summary.unique, summary.seconds)
    return summary
