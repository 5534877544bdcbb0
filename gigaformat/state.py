"""The state of a dataset at one generation, and the changes between two generations.

This is the contract between the publisher (which writes a snapshot's full state, or a diff's
changes), boxlink (which applies changes to rebuild the state on a node) and the render server
(which loads it). Pure data and pure functions: no I/O but (de)serialisation of bytes.
"""

from __future__ import annotations

import gc
import gzip
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from gigaformat.canvas import Canvas
from gigaformat.errors import FormatError, MalformedDocument, UnsupportedFormat
from gigaformat.levels import Geometry
from gigaformat.manifest import Step
from gigaformat.tiles import ENTRY, INDEX_NAME, TileCodec, TileIndex, apply_tiles, tiles_set_json

STATE_FORMAT = 2
STATE_NAME = "state.json.gz"  # a snapshot's index document, and a node's merged state per generation
CHANGES_NAME = "changes.json.gz"  # a diff's index document


_new_tuple = tuple.__new__


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a state is parsed and built: the hundreds of thousands
    of lists and tuples of a big state (none in a cycle) set off collection after collection of the whole
    heap. A 44,651-item generation's first load in a render worker: 0.45-0.51 s instead of 0.59-0.70
    (2026-12-07). Reference counting frees all the same; the collector runs again afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ItemRecord(NamedTuple):
    """One item as placed on the canvas. A named tuple, not a frozen dataclass: a render worker loads one
    per item at every start (100k on a full wall), and a tuple is built in a third of the time."""

    id: str
    order: float  # drawing order: larger is drawn later (see build.stable_orders)
    x: int
    y: int
    width: int
    height: int
    variant: str
    meta: str = ""  # itemsdb.meta_digest of its metadata ("" for none); the values are in the items index

    @property
    def placement(self) -> tuple:
        """What decides the item's pixels (its metadata does not)."""
        return self.order, self.x, self.y, self.width, self.height, self.variant

    def to_json(self) -> list:
        return list(self)

    @classmethod
    def from_json(cls, row: list) -> ItemRecord:
        order = row[1] if isinstance(row[1], int) else float(row[1])
        # tuple.__new__ straight: the named tuple's own __new__ is a Python function, a quarter of the time
        return _new_tuple(cls, (str(row[0]), order, int(row[2]), int(row[3]), int(row[4]), int(row[5]),
                                str(row[6]), str(row[7]) if len(row) > 7 else ""))


class VariantRecord(NamedTuple):
    """An image scaled to one size: its mip chain stored in ``pack`` at ``offset`` (a named tuple for the
    same reason as ItemRecord: one per distinct cover is loaded at every start)."""

    pack: str
    offset: int
    width: int
    height: int

    def to_json(self) -> list:
        return list(self)

    @classmethod
    def from_json(cls, row: list) -> VariantRecord:
        return cls(str(row[0]), int(row[1]), int(row[2]), int(row[3]))


@dataclass(frozen=True)
class StoredLevels:
    """Which levels are stored as encoded tiles (the tile index), and how.

    Levels ``0..top`` are stored, but for those in ``derived``: a derived level is computed at serve time
    from the decoded tiles of the level below it (finer), by exact halving. Levels above ``top`` are composed
    from the items' mip chains (``variants``). The canvas's own top level (1:1), when stored, is encoded with
    ``fine``; every other stored level with ``coarse``. ``top`` = -1: nothing stored.
    """

    top: int = -1
    derived: tuple[int, ...] = ()
    fine: TileCodec = TileCodec()
    coarse: TileCodec = TileCodec(quality=92, subsampling=0)

    def is_stored(self, z: int) -> bool:
        return 0 <= z <= self.top and z not in self.derived

    def codec(self, z: int, canvas_top: int) -> TileCodec:
        return self.fine if z == canvas_top else self.coarse

    def to_json(self) -> dict:
        return {"top": self.top, "derived": list(self.derived), "fine": self.fine.to_json(),
                "coarse": self.coarse.to_json()}

    @classmethod
    def from_json(cls, doc: dict) -> StoredLevels:
        return cls(int(doc["top"]), tuple(int(z) for z in doc["derived"]), TileCodec.from_json(doc["fine"]),
                   TileCodec.from_json(doc["coarse"]))


@dataclass
class State:
    """One generation: canvas, items, their mip chains (``variants``), stored tiles and version cells.

    ``tiles`` (the binary tile index, a separate object: ``tiles.idx`` beside the state document) is not in
    the JSON; its entries' pack numbers index ``tile_packs``.
    """

    dataset: str
    generation: int
    canvas: Canvas
    stored: StoredLevels = field(default_factory=StoredLevels)
    items: dict[str, ItemRecord] = field(default_factory=dict)
    variants: dict[str, VariantRecord] = field(default_factory=dict)
    cells: list[list[int]] = field(default_factory=list)  # [row][col] -> generation last changed
    tile_packs: list[str] = field(default_factory=list)
    tiles: TileIndex | None = None
    meta_columns: list[str] = field(default_factory=list)  # items.csv's metadata columns (fixed by a snapshot)

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.canvas.width, self.canvas.height)

    @property
    def overview_level(self) -> int:
        """Levels 0..overview_level come from stored (or derived) tiles; finer ones are composed."""
        return self.stored.top

    def items_in_order(self) -> list[ItemRecord]:
        return sorted(self.items.values(), key=lambda item: item.order)

    def packs(self) -> set[str]:
        """Every pack key this state reads."""
        return {v.pack for v in self.variants.values()} | set(self.tile_packs)

    def tile_index(self) -> TileIndex:
        """The tile index (an empty one of the stored levels if the state has none yet)."""
        if self.tiles is None:
            self.tiles = TileIndex.for_levels(self.geometry, self.stored.top)
        return self.tiles

    def to_json(self) -> dict:
        return {
            "format": STATE_FORMAT, "dataset": self.dataset, "generation": self.generation,
            "canvas": self.canvas.to_json(), "stored": self.stored.to_json(), "tile_packs": self.tile_packs,
            "meta_columns": self.meta_columns,
            "items": [item.to_json() for item in self.items_in_order()],
            "variants": {key: v.to_json() for key, v in sorted(self.variants.items())},
            "cells": self.cells,
        }

    @classmethod
    def from_json(cls, doc: dict, tiles: TileIndex | None = None) -> State:
        """The state ``doc`` holds (with its tile index, read separately); MalformedDocument (UnsupportedFormat
        for another format) otherwise."""
        with _reading("dataset state", doc):
            items = (ItemRecord.from_json(row) for row in doc["items"])
            state = cls(
                dataset=str(doc["dataset"]), generation=int(doc["generation"]),
                canvas=Canvas.from_json(doc["canvas"]), stored=StoredLevels.from_json(doc["stored"]),
                items={item.id: item for item in items},
                variants={k: VariantRecord.from_json(v) for k, v in doc["variants"].items()},
                cells=[[int(g) for g in row] for row in doc["cells"]],
                tile_packs=[str(p) for p in doc["tile_packs"]], tiles=tiles,
                meta_columns=[str(c) for c in doc.get("meta_columns", [])],
            )
        _check_index(state)
        return state


def _check_index(state: State) -> None:
    if state.stored.top < 0:
        return
    if state.tiles is None:
        raise MalformedDocument(f"{state.dataset}@{state.generation} stores levels 0-{state.stored.top} but has "
                                "no tile index")
    expected = [state.geometry.tile_counts(z) for z in range(state.stored.top + 1)]
    if [tuple(c) for c in state.tiles.counts] != expected:
        raise MalformedDocument(f"{state.dataset}@{state.generation}: the tile index does not fit the canvas")


@dataclass
class Changes:
    """What turns the state at ``base`` into the state at ``generation``. A diff never changes the canvas or
    the stored levels (the publisher writes a snapshot for that)."""

    dataset: str
    generation: int
    base: int
    canvas: Canvas
    stored: StoredLevels
    items_upsert: list[ItemRecord] = field(default_factory=list)
    items_remove: list[str] = field(default_factory=list)
    variants_add: dict[str, VariantRecord] = field(default_factory=dict)
    variants_remove: list[str] = field(default_factory=list)
    tiles_set: dict[str, list] = field(default_factory=dict)  # "z/x/y" -> [pack key, offset, length, digest hex]
    meta_set: dict[str, dict[str, str]] = field(default_factory=dict)  # item -> its metadata, where it changed
    cells: list[list[int]] = field(default_factory=list)  # the whole grid after the change (small)

    def is_empty(self) -> bool:
        return not (self.items_upsert or self.items_remove or self.variants_add or self.variants_remove
                    or self.tiles_set or self.meta_set)

    def to_json(self) -> dict:
        return {
            "format": STATE_FORMAT, "dataset": self.dataset, "generation": self.generation, "base": self.base,
            "canvas": self.canvas.to_json(), "stored": self.stored.to_json(),
            "items_upsert": [item.to_json() for item in self.items_upsert],
            "items_remove": self.items_remove,
            "variants_add": {k: v.to_json() for k, v in sorted(self.variants_add.items())},
            "variants_remove": self.variants_remove,
            "tiles_set": dict(sorted(self.tiles_set.items())),
            "meta_set": dict(sorted(self.meta_set.items())),
            "cells": self.cells,
        }

    @classmethod
    def from_json(cls, doc: dict) -> Changes:
        """The changes ``doc`` holds; MalformedDocument (UnsupportedFormat for another format) otherwise."""
        with _reading("dataset diff", doc):
            return cls(
                dataset=str(doc["dataset"]), generation=int(doc["generation"]), base=int(doc["base"]),
                canvas=Canvas.from_json(doc["canvas"]), stored=StoredLevels.from_json(doc["stored"]),
                items_upsert=[ItemRecord.from_json(row) for row in doc["items_upsert"]],
                items_remove=[str(i) for i in doc["items_remove"]],
                variants_add={k: VariantRecord.from_json(v) for k, v in doc["variants_add"].items()},
                variants_remove=[str(v) for v in doc["variants_remove"]],
                tiles_set={str(k): list(v) for k, v in doc["tiles_set"].items()},
                meta_set={str(k): {str(c): str(v) for c, v in dict(m).items()} for k, m in doc["meta_set"].items()},
                cells=[[int(g) for g in row] for row in doc["cells"]],
            )


class _reading:
    """Turn what a malformed document raises (KeyError, TypeError, ...) into MalformedDocument."""

    def __init__(self, what: str, doc: object):
        self.what = what
        if not isinstance(doc, dict):
            raise MalformedDocument(f"{what}: expected a JSON object, got {type(doc).__name__}")
        if doc.get("format") != STATE_FORMAT:
            raise UnsupportedFormat(f"{what} format {doc.get('format')!r} is not {STATE_FORMAT} (written by "
                                    "another gigatile version)")

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is None or isinstance(exc, FormatError):
            return False
        if isinstance(exc, (KeyError, TypeError, ValueError, AttributeError, IndexError)):
            raise MalformedDocument(f"{self.what} is malformed ({kind.__name__}: {exc})") from None
        return False


def apply_changes(state: State, changes: Changes) -> State:
    """The state after ``changes``; MalformedDocument if they do not start from ``state``."""
    if changes.base != state.generation or changes.dataset != state.dataset:
        raise MalformedDocument(f"diff {changes.dataset}@{changes.generation} applies to generation {changes.base}, "
                                f"not to {state.dataset}@{state.generation}")
    if changes.canvas != state.canvas or changes.stored != state.stored:
        raise MalformedDocument(f"diff {changes.dataset}@{changes.generation} changes the canvas or the stored "
                                "levels, which only a snapshot may")
    items = dict(state.items)
    for item_id in changes.items_remove:
        items.pop(item_id, None)
    items.update((item.id, item) for item in changes.items_upsert)
    variants = {k: v for k, v in state.variants.items() if k not in set(changes.variants_remove)}
    variants.update(changes.variants_add)
    packs = list(state.tile_packs)
    tiles = state.tiles.copy() if state.tiles is not None else None
    if changes.tiles_set:
        if tiles is None:
            raise MalformedDocument(f"diff {changes.dataset}@{changes.generation} sets tiles of a state without any")
        apply_tiles(tiles, packs, changes.tiles_set)
    return replace(state, generation=changes.generation, items=items, variants=variants, cells=changes.cells,
                   tile_packs=packs, tiles=tiles)


def diff_states(old: State, new: State) -> Changes:
    """The changes that turn ``old`` into ``new`` (records compared by value; tiles by their index entries).

    ``new``'s tile packs must extend ``old``'s (the builder keeps the old numbering); MalformedDocument if the
    canvas or the stored levels differ (a snapshot is needed then).
    """
    if old.canvas != new.canvas or old.stored != new.stored or new.tile_packs[:len(old.tile_packs)] != old.tile_packs:
        raise MalformedDocument("the canvas, the stored levels or the tile packs changed: publish a snapshot")
    tiles_set = {}
    if new.tiles is not None:
        before = old.tile_index().entries
        after = new.tiles.entries
        size = ENTRY.size
        changed = (tile for tile, at in _positions(new.tiles) if after[at:at + size] != before[at:at + size])
        tiles_set = tiles_set_json(((z, x, y, new.tiles.get(z, x, y)) for z, x, y in changed), new.tile_packs)
    return Changes(
        dataset=new.dataset, generation=new.generation, base=old.generation, canvas=new.canvas, stored=new.stored,
        items_upsert=[item for item in new.items_in_order() if old.items.get(item.id) != item],
        items_remove=sorted(set(old.items) - set(new.items)),
        variants_add={k: v for k, v in new.variants.items() if old.variants.get(k) != v},
        variants_remove=sorted(set(old.variants) - set(new.variants)),
        tiles_set=tiles_set, cells=new.cells,
    )


def _positions(index: TileIndex):
    """((z, x, y), byte offset of its entry) of every entry of ``index``."""
    for z, (cols, rows) in enumerate(index.counts):
        base = index.starts[z]
        for y in range(rows):
            for x in range(cols):
                yield (z, x, y), (base + y * cols + x) * ENTRY.size


def dump_gzip_json(doc: dict, compresslevel: int = 6) -> bytes:
    # mtime=0: the same document always gives the same bytes (and the same sha256)
    return gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), compresslevel=compresslevel, mtime=0)


def load_gzip_json(data: bytes, what: str) -> dict:
    """The JSON document gzipped in ``data``; MalformedDocument (naming ``what``) otherwise."""
    try:
        return json.loads(gzip.decompress(data))
    except (OSError, ValueError, EOFError) as exc:
        raise MalformedDocument(f"{what}: not a gzipped JSON document ({exc})") from None


def index_key(prefix: str) -> str:
    """The key of a snapshot's tile index under its step prefix (``snap-3/`` -> ``snap-3/tiles.idx``)."""
    return prefix + INDEX_NAME


def step_prefix(step: Step) -> str:
    return step.index.rsplit("/", 1)[0] + "/" if "/" in step.index else ""


def rebuild_state(steps: Iterable[Step], read: Callable[[str], bytes], base: State | None = None) -> State:
    """The state after ``steps``: a snapshot's state and tile index, then each diff's changes in order.

    ``steps`` start with a snapshot, or with a diff whose base is ``base``; diffs the state already holds
    (a generation at or below it) are skipped. ``read(key)`` gives the bytes of an object the steps list
    (verified by the caller). MalformedDocument if a document is malformed or a diff does not follow.
    """
    with collector_paused():
        return _rebuild(steps, read, base)


def _rebuild(steps: Iterable[Step], read: Callable[[str], bytes], base: State | None) -> State:
    state = base
    for step in steps:
        if step.kind == "snapshot":
            doc = load_gzip_json(read(step.index), step.index)
            stores = isinstance(doc, dict) and isinstance(doc.get("stored"), dict) and doc["stored"].get("top", -1) >= 0
            key = index_key(step_prefix(step))
            tiles = TileIndex.from_bytes(read(key), key) if stores else None
            state = State.from_json(doc, tiles)
        elif state is None:
            raise MalformedDocument(f"diff {step.generation} has no state to apply to (no snapshot before it)")
        elif step.generation > state.generation:
            state = apply_changes(state, Changes.from_json(load_gzip_json(read(step.index), step.index)))
    if state is None:
        raise MalformedDocument("no steps to build a state from")
    return state
