"""The state of a dataset at one generation, and the changes between two generations.

This is the contract between the publisher (which writes a snapshot's full state, or a diff's
changes), boxlink (which applies changes to rebuild the state on a node) and the render server
(which loads it). Pure data and pure functions: no I/O but (de)serialisation of bytes.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from gigaformat.canvas import Canvas
from gigaformat.errors import FormatError, MalformedDocument, UnsupportedFormat
from gigaformat.levels import Geometry
from gigaformat.manifest import Step

STATE_FORMAT = 1
STATE_NAME = "state.json.gz"  # a snapshot's index document, and a node's merged state per generation
CHANGES_NAME = "changes.json.gz"  # a diff's index document


@dataclass(frozen=True)
class ItemRecord:
    id: str
    order: float  # drawing order: larger is drawn later (see build.stable_orders)
    x: int
    y: int
    width: int
    height: int
    variant: str

    def to_json(self) -> list:
        return [self.id, self.order, self.x, self.y, self.width, self.height, self.variant]

    @classmethod
    def from_json(cls, row: list) -> ItemRecord:
        order = row[1] if isinstance(row[1], int) else float(row[1])
        return cls(str(row[0]), order, int(row[2]), int(row[3]), int(row[4]), int(row[5]), str(row[6]))


@dataclass(frozen=True)
class VariantRecord:
    """An image scaled to one size: its mip chain stored in ``pack`` at ``offset``."""

    pack: str
    offset: int
    width: int
    height: int

    def to_json(self) -> list:
        return [self.pack, self.offset, self.width, self.height]

    @classmethod
    def from_json(cls, row: list) -> VariantRecord:
        return cls(str(row[0]), int(row[1]), int(row[2]), int(row[3]))


@dataclass(frozen=True)
class BlobRecord:
    """An encoded overview tile stored in ``pack``."""

    pack: str
    offset: int
    length: int
    sha256: str

    def to_json(self) -> list:
        return [self.pack, self.offset, self.length, self.sha256]

    @classmethod
    def from_json(cls, row: list) -> BlobRecord:
        return cls(str(row[0]), int(row[1]), int(row[2]), str(row[3]))


@dataclass
class State:
    dataset: str
    generation: int
    canvas: Canvas
    overview_level: int  # levels 0..overview_level are served from pre-rendered tiles; -1: none
    items: dict[str, ItemRecord] = field(default_factory=dict)
    variants: dict[str, VariantRecord] = field(default_factory=dict)
    overview: dict[str, BlobRecord] = field(default_factory=dict)  # "z/x/y" -> tile
    cells: list[list[int]] = field(default_factory=list)  # [row][col] -> generation last changed

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.canvas.width, self.canvas.height)

    def items_in_order(self) -> list[ItemRecord]:
        return sorted(self.items.values(), key=lambda item: item.order)

    def packs(self) -> set[str]:
        """Every pack key this state reads."""
        return {v.pack for v in self.variants.values()} | {t.pack for t in self.overview.values()}

    def to_json(self) -> dict:
        return {
            "format": STATE_FORMAT, "dataset": self.dataset, "generation": self.generation,
            "canvas": self.canvas.to_json(), "overview_level": self.overview_level,
            "items": [item.to_json() for item in self.items_in_order()],
            "variants": {key: v.to_json() for key, v in sorted(self.variants.items())},
            "overview": {key: t.to_json() for key, t in sorted(self.overview.items())},
            "cells": self.cells,
        }

    @classmethod
    def from_json(cls, doc: dict) -> State:
        """The state ``doc`` holds; MalformedDocument (UnsupportedFormat for a newer format) otherwise."""
        with _reading("dataset state", doc):
            items = (ItemRecord.from_json(row) for row in doc["items"])
            return cls(
                dataset=str(doc["dataset"]), generation=int(doc["generation"]),
                canvas=Canvas.from_json(doc["canvas"]), overview_level=int(doc["overview_level"]),
                items={item.id: item for item in items},
                variants={k: VariantRecord.from_json(v) for k, v in doc["variants"].items()},
                overview={k: BlobRecord.from_json(v) for k, v in doc["overview"].items()},
                cells=[[int(g) for g in row] for row in doc["cells"]],
            )


@dataclass
class Changes:
    """What turns the state at ``base`` into the state at ``generation``."""

    dataset: str
    generation: int
    base: int
    canvas: Canvas
    overview_level: int
    items_upsert: list[ItemRecord] = field(default_factory=list)
    items_remove: list[str] = field(default_factory=list)
    variants_add: dict[str, VariantRecord] = field(default_factory=dict)
    variants_remove: list[str] = field(default_factory=list)
    overview_set: dict[str, BlobRecord] = field(default_factory=dict)
    overview_remove: list[str] = field(default_factory=list)
    cells: list[list[int]] = field(default_factory=list)  # the whole grid after the change (small)

    def is_empty(self) -> bool:
        return not (self.items_upsert or self.items_remove or self.variants_add or self.variants_remove
                    or self.overview_set or self.overview_remove)

    def to_json(self) -> dict:
        return {
            "format": STATE_FORMAT, "dataset": self.dataset, "generation": self.generation, "base": self.base,
            "canvas": self.canvas.to_json(), "overview_level": self.overview_level,
            "items_upsert": [item.to_json() for item in self.items_upsert],
            "items_remove": self.items_remove,
            "variants_add": {k: v.to_json() for k, v in sorted(self.variants_add.items())},
            "variants_remove": self.variants_remove,
            "overview_set": {k: t.to_json() for k, t in sorted(self.overview_set.items())},
            "overview_remove": self.overview_remove,
            "cells": self.cells,
        }

    @classmethod
    def from_json(cls, doc: dict) -> Changes:
        """The changes ``doc`` holds; MalformedDocument (UnsupportedFormat for a newer format) otherwise."""
        with _reading("dataset diff", doc):
            return cls(
                dataset=str(doc["dataset"]), generation=int(doc["generation"]), base=int(doc["base"]),
                canvas=Canvas.from_json(doc["canvas"]), overview_level=int(doc["overview_level"]),
                items_upsert=[ItemRecord.from_json(row) for row in doc["items_upsert"]],
                items_remove=[str(i) for i in doc["items_remove"]],
                variants_add={k: VariantRecord.from_json(v) for k, v in doc["variants_add"].items()},
                variants_remove=[str(v) for v in doc["variants_remove"]],
                overview_set={k: BlobRecord.from_json(v) for k, v in doc["overview_set"].items()},
                overview_remove=[str(t) for t in doc["overview_remove"]],
                cells=[[int(g) for g in row] for row in doc["cells"]],
            )


class _reading:
    """Turn what a malformed document raises (KeyError, TypeError, ...) into MalformedDocument."""

    def __init__(self, what: str, doc: object):
        self.what = what
        if not isinstance(doc, dict):
            raise MalformedDocument(f"{what}: expected a JSON object, got {type(doc).__name__}")
        if doc.get("format") != STATE_FORMAT:
            raise UnsupportedFormat(f"{what} format {doc.get('format')!r} is not {STATE_FORMAT}; upgrade gigatile")

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
    items = dict(state.items)
    for item_id in changes.items_remove:
        items.pop(item_id, None)
    items.update((item.id, item) for item in changes.items_upsert)
    variants = {k: v for k, v in state.variants.items() if k not in set(changes.variants_remove)}
    variants.update(changes.variants_add)
    overview = {k: t for k, t in state.overview.items() if k not in set(changes.overview_remove)}
    overview.update(changes.overview_set)
    return replace(state, generation=changes.generation, canvas=changes.canvas,
                   overview_level=changes.overview_level, items=items, variants=variants,
                   overview=overview, cells=changes.cells)


def diff_states(old: State, new: State) -> Changes:
    """The changes that turn ``old`` into ``new`` (records compared by value)."""
    return Changes(
        dataset=new.dataset, generation=new.generation, base=old.generation, canvas=new.canvas,
        overview_level=new.overview_level,
        items_upsert=[item for item in new.items_in_order() if old.items.get(item.id) != item],
        items_remove=sorted(set(old.items) - set(new.items)),
        variants_add={k: v for k, v in new.variants.items() if old.variants.get(k) != v},
        variants_remove=sorted(set(old.variants) - set(new.variants)),
        overview_set={k: t for k, t in new.overview.items() if old.overview.get(k) != t},
        overview_remove=sorted(set(old.overview) - set(new.overview)),
        cells=new.cells,
    )


def dump_gzip_json(doc: dict) -> bytes:
    # mtime=0: the same document always gives the same bytes (and the same sha256)
    return gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), compresslevel=6, mtime=0)


def load_gzip_json(data: bytes, what: str) -> dict:
    """The JSON document gzipped in ``data``; MalformedDocument (naming ``what``) otherwise."""
    try:
        return json.loads(gzip.decompress(data))
    except (OSError, ValueError, EOFError) as exc:
        raise MalformedDocument(f"{what}: not a gzipped JSON document ({exc})") from None


def rebuild_state(steps: Iterable[Step], read_index: Callable[[Step], bytes], base: State | None = None) -> State:
    """The state after ``steps``: a snapshot's state, then each diff's changes applied in order.

    ``steps`` start with a snapshot, or with a diff whose base is ``base``; diffs the state already holds
    (a generation at or below it) are skipped. ``read_index(step)`` gives the bytes of the step's index
    document (verified by the caller). MalformedDocument if a document is malformed or a diff does not
    follow.
    """
    state = base
    for step in steps:
        if step.kind == "snapshot":
            state = State.from_json(load_gzip_json(read_index(step), step.index))
        elif state is None:
            raise MalformedDocument(f"diff {step.generation} has no state to apply to (no snapshot before it)")
        elif step.generation > state.generation:
            state = apply_changes(state, Changes.from_json(load_gzip_json(read_index(step), step.index)))
    if state is None:
        raise MalformedDocument("no steps to build a state from")
    return state
