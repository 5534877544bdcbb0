"""Build a generation of a dataset from a source folder: mip chains and overview tiles in packs.

The build is a pure function of the source (same folder, same bytes); against a previous state it
reuses every variant and overview tile that did not change, so a diff carries only what is new.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gigaformat.levels import CELL_SIZE, Geometry
from gigaformat.packs import PackFile, PackWriter
from gigaformat.state import BlobRecord, ItemRecord, State, VariantRecord
from tiler.compose import MipStore
from tiler.mips import chain_sizes
from tiler.overview import (
    ITEMS_PER_TILE_LIMIT,
    choose_overview_level,
    cut_tiles,
    encode_overview_tile,
    overview_levels,
)
from tiler.source import Source
from tiler.spatial import ItemTable, SpatialIndex
from tiler.variants import build_chain, variant_id

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class Build:
    state: State
    packs: list[PackFile]


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


def build_generation(source: Source, dataset: str, generation: int, prefix: str, staging: Path,
                     previous: State | None = None, reuse: bool = True,
                     items_per_tile: int = ITEMS_PER_TILE_LIMIT, progress: Progress = _no_progress,
                     threads: int = 2) -> Build:
    """The state at ``generation`` and the packs (under ``staging``/``prefix``) holding its new blobs.

    With ``reuse`` (a diff), variants and overview tiles equal to ``previous`` keep their records;
    without it (a snapshot), everything is written anew.
    """
    canvas = source.canvas
    items, wanted = _items_and_variants(source, previous)
    writer = PackWriter(staging, prefix)
    old = previous if (previous is not None and reuse) else None
    vids = sorted(wanted)
    records: dict[str, VariantRecord] = {}
    # Every chain, back to back in one array (the sizes are known up front): the compositor reads them
    # from there to render the overview levels, and new ones are written to packs from there.
    sizes = chain_sizes([wanted[vid][1] for vid in vids], [wanted[vid][2] for vid in vids])
    starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    pixels = np.empty(int(starts[-1]), dtype=np.uint8)

    def load(n: int) -> int:
        image, width, height = wanted[vids[n]]
        chain = build_chain(str(source.image_path(image)), width, height, canvas.background)
        at = int(starts[n])
        for level in chain:
            pixels[at:at + level.size] = level.reshape(-1)
            at += level.size
        return n

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for done, n in enumerate(pool.map(load, range(len(vids))), start=1):
            vid, (_, width, height) = vids[n], wanted[vids[n]]
            if old is not None and vid in old.variants:
                records[vid] = old.variants[vid]
            else:
                key, offset = writer.add(memoryview(pixels[starts[n]:starts[n + 1]]))
                records[vid] = VariantRecord(key, offset, width, height)
            progress("variants", done, len(vids))
    state = State(dataset, generation, canvas, -1, items=items, variants=records)
    geometry = state.geometry
    ordered = state.items_in_order()
    slot = {vid: i for i, vid in enumerate(vids)}
    table = ItemTable([i.x for i in ordered], [i.y for i in ordered], [i.width for i in ordered],
                      [i.height for i in ordered], [slot[i.variant] for i in ordered])
    state.overview_level = choose_overview_level(geometry, table, items_per_tile)
    mips = MipStore(pixels, starts[:-1], [wanted[vid][1] for vid in vids], [wanted[vid][2] for vid in vids])

    index = SpatialIndex(table, canvas.width, canvas.height)
    state.overview = _overview_tiles(state, table, index, mips, old, writer, progress)
    state.cells = _cells(geometry, generation, previous, state)
    return Build(state, writer.finish())


def _longest_increasing(ids: list[str], previous: dict[str, float]) -> list[int]:
    """Positions of the longest run of ``ids`` whose previous keys increase (patience sorting)."""
    tails: list[float] = []
    tail_at: list[int] = []
    parent: dict[int, int] = {}
    for i, item_id in enumerate(ids):
        key = previous.get(item_id)
        if key is None:
            continue
        slot = bisect.bisect_left(tails, key)
        if slot > 0:
            parent[i] = tail_at[slot - 1]
        if slot == len(tails):
            tails.append(key)
            tail_at.append(i)
        else:
            tails[slot], tail_at[slot] = key, i
    chain = []
    at = tail_at[-1] if tail_at else None
    while at is not None:
        chain.append(at)
        at = parent.get(at)
    return chain[::-1]


def stable_orders(ids: list[str], previous: dict[str, float]) -> list[float]:
    """Drawing-order keys for ``ids`` (in drawing order) that keep every previous key that still fits.

    Rows deleted, appended or edited in place keep the other items' keys, so a diff carries only the
    items that really changed; items that moved or are new get keys between their kept neighbours.
    """
    keys: list[float | None] = [None] * len(ids)
    for i in _longest_increasing(ids, previous):
        keys[i] = previous[ids[i]]
    result: list[float] = []
    i = 0
    while i < len(keys):
        if keys[i] is not None:
            result.append(keys[i])
            i += 1
            continue
        j = i
        while j < len(keys) and keys[j] is None:
            j += 1
        low = result[-1] if result else (keys[j] - (j - i) - 1 if j < len(keys) else -1)
        high = keys[j] if j < len(keys) else low + (j - i) + 1
        step = (high - low) / (j - i + 1)
        result.extend(low + step * (n + 1) for n in range(j - i))
        i = j
    return [int(k) if float(k).is_integer() else k for k in result]


def _items_and_variants(source: Source, previous: State | None
                        ) -> tuple[dict[str, ItemRecord], dict[str, tuple[str, int, int]]]:
    items: dict[str, ItemRecord] = {}
    wanted: dict[str, tuple[str, int, int]] = {}
    old_orders = {i.id: i.order for i in previous.items.values()} if previous is not None else {}
    orders = stable_orders([item.id for item in source.items], old_orders) if old_orders else \
        [item.order for item in source.items]
    for item, order in zip(source.items, orders, strict=True):
        vid = variant_id(source.image_sha256[item.image], item.width, item.height)
        wanted.setdefault(vid, (item.image, item.width, item.height))
        items[item.id] = ItemRecord(item.id, order, item.x, item.y, item.width, item.height, vid)
    return items, wanted


def _overview_tiles(state: State, table: ItemTable, index: SpatialIndex, mips: MipStore, old: State | None,
                    writer: PackWriter, progress: Progress) -> dict[str, BlobRecord]:
    geometry, background = state.geometry, state.canvas.background
    total = sum(np.prod(geometry.tile_counts(z)) for z in range(state.overview_level + 1))
    tiles: dict[str, BlobRecord] = {}
    levels = overview_levels(geometry, background, table, index, mips, state.overview_level)
    for z, level in levels:
        for name, pixels in cut_tiles(level, z, background, geometry.tile_size):
            data = encode_overview_tile(pixels)
            digest = hashlib.sha256(data).hexdigest()
            before = old.overview.get(name) if old is not None else None
            if before is not None and before.sha256 == digest:
                tiles[name] = before
            else:
                key, offset = writer.add(data)
                tiles[name] = BlobRecord(key, offset, len(data), digest)
            progress("overview", len(tiles), int(total))
    return tiles


def _cells(geometry: Geometry, generation: int, previous: State | None, state: State) -> list[list[int]]:
    """Per version cell, the generation its pixels last changed in (docs/architecture.md, "Versioned tile URLs")."""
    cols, rows = geometry.cell_counts()
    if previous is None or (previous.canvas.width, previous.canvas.height) != (geometry.width, geometry.height) \
            or previous.canvas.background != state.canvas.background:
        return [[generation] * cols for _ in range(rows)]
    grid = np.array(previous.cells, dtype=np.int64).reshape(rows, cols)
    touched = [item for item in state.items.values() if previous.items.get(item.id) != item]
    touched += [previous.items[i] for i in previous.items if state.items.get(i) != previous.items[i]]
    for item in touched:
        x0, y0 = max(item.x, 0), max(item.y, 0)
        x1, y1 = min(item.x + item.width, geometry.width), min(item.y + item.height, geometry.height)
        if x1 > x0 and y1 > y0:
            grid[y0 // CELL_SIZE:-(-y1 // CELL_SIZE), x0 // CELL_SIZE:-(-x1 // CELL_SIZE)] = generation
    return grid.tolist()
