"""Build a generation of a dataset from a source folder: its state, its stored tiles and (in the chains
layout) its items' mip chains, written into pack files as they are made.

The build is a pure function of the source (same folder, same bytes). Against a previous state (a diff) it
keeps every mip chain and stored tile that did not change and makes only the tiles over changed items, so
a diff carries only what is new. Memory stays bounded whatever the wall's size in the pyramid layout (a
path of tiles, a few subtrees in flight and a bounded cache of decoded images); the chains layout holds
its chains, which it is chosen for only when they are small (``tiler.storage``).
"""

from __future__ import annotations

import bisect
import logging
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gigaformat.itemsdb import (
    ITEMS_ARCHIVE_NAME,
    ITEMS_INDEX_NAME,
    archive_items_index,
    build_items_index,
    meta_digest,
)
from gigaformat.levels import CELL_SIZE, Geometry
from gigaformat.packs import PackFile, PackWriter
from gigaformat.state import ItemRecord, State, StoredLevels, VariantRecord
from gigaformat.tiles import TileEntry, TileIndex, tile_digest
from tiler.compose import MipStore, Window, render_window
from tiler.covers import CoverCache
from tiler.mips import chain_sizes
from tiler.pyramid import PyramidPlan, build_pyramid
from tiler.source import Source, image_rows
from tiler.spatial import ItemTable, SpatialIndex
from tiler.storage import ITEMS_PER_TILE_LIMIT, choose_stored_levels
from tiler.storedtiles import TILE, background_tile
from tiler.variants import build_chain, variant_id

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (phase, done, total)
FetchBlob = Callable[[str, int, int], bytes]  # (pack key, offset, length) -> bytes of the previous generation


@dataclass
class Build:
    state: State
    packs: list[PackFile]
    meta: dict[str, dict[str, str]]  # every item's metadata, from the source
    meta_columns: list[str]
    items_archive: Path | None = None  # a snapshot's items index as one tar, under the staging folder

    def meta_set(self, previous: State) -> dict[str, dict[str, str]]:
        """The metadata a diff from ``previous`` sets: of every item added or whose metadata changed."""
        return {item.id: self.meta[item.id] for item in self.state.items.values()
                if previous.items.get(item.id) is None or previous.items[item.id].meta != item.meta}


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


class IndexSink:
    """Stored tiles into packs and the tile index; identical tiles are stored once."""

    def __init__(self, index: TileIndex, packs: list[str], writer: PackWriter):
        self.index = index
        self.packs = packs
        self.writer = writer
        self.numbers = {key: n for n, key in enumerate(packs)}
        self.seen: dict[bytes, TileEntry] = {}
        self.written = 0

    def put(self, z: int, x: int, y: int, data: bytes) -> None:
        digest = tile_digest(data)
        before = self.index.get(z, x, y)
        if before is not None and before.digest == digest:
            return  # made again (a diff's dirty tile) with the same bytes: keep where it is
        entry = self.seen.get(digest)
        if entry is None:
            key, offset = self.writer.add(data)
            if key not in self.numbers:
                self.numbers[key] = len(self.packs)
                self.packs.append(key)
            entry = TileEntry(self.numbers[key], offset, len(data), digest)
            self.seen[digest] = entry
            self.written += 1
        self.index.set(z, x, y, entry)


def build_generation(source: Source, dataset: str, generation: int, prefix: str, staging: Path,
                     previous: State | None = None, reuse: bool = True,
                     items_per_tile: int = ITEMS_PER_TILE_LIMIT, progress: Progress = _no_progress,
                     threads: int = 2, store: str = "auto", fetch_previous: FetchBlob | None = None,
                     on_pack: Callable[[PackFile], None] | None = None) -> Build:
    """The state at ``generation`` and the packs (under ``staging``/``prefix``) holding its new blobs.

    With ``reuse`` (a diff against ``previous``, same canvas and layout), unchanged chains and tiles keep
    their records and only tiles over changed items are made, reading unchanged neighbours through
    ``fetch_previous``; without it (a snapshot), everything is written anew. ``on_pack`` is called with
    each pack as soon as it is complete (to upload it while the build goes on).
    """
    canvas = source.canvas
    geometry = Geometry(canvas.width, canvas.height)
    items, wanted = _items_and_variants(source, previous)
    vids, table = _table(items, wanted)
    stored = _layout(geometry, table, wanted, vids, store, items_per_tile)
    old = previous if (previous is not None and reuse and previous.canvas == canvas
                       and previous.stored == stored) else None
    writer = PackWriter(staging, prefix, on_close=on_pack)
    state = State(dataset, generation, canvas, stored, items=items)
    index = SpatialIndex(table, canvas.width, canvas.height)
    if stored.top >= geometry.top:  # the pyramid layout: every level stored, no chains
        rows = image_rows(source)
        covers = CoverCache({v: (str(source.image_path(w[0])), w[1], w[2], _where(source, rows, w[0]))
                             for v, w in wanted.items()}, canvas.background)
        leaf = _paste_leaf(geometry, canvas.background, table, index, vids, covers)
    else:
        state.variants, mips = _chains(source, wanted, vids, old, writer, progress, threads)
        leaf = _compose_leaf(geometry, canvas.background, table, index, mips, stored.top)
    state.tiles = old.tile_index().copy() if old is not None else TileIndex.for_levels(geometry, stored.top)
    state.tile_packs = list(old.tile_packs) if old is not None else []
    sink = IndexSink(state.tiles, state.tile_packs, writer)
    plan = PyramidPlan(geometry, canvas.background, stored, leaf)
    if old is not None:
        plan = PyramidPlan(geometry, canvas.background, stored, leaf, _dirty_tiles(geometry, stored.top, old, state),
                           _previous_tile(old, fetch_previous))
    build_pyramid(plan, sink, threads, lambda done, total: progress("tiles", done, total))
    if stored.top < 0:
        state.tiles = None
    state.cells = _cells(geometry, generation, previous, state)
    meta = {item.id: dict(item.meta) for item in source.items}
    state.meta_columns = list(source.meta_columns)
    items_archive = None
    if old is None:  # a snapshot carries the whole items index; a diff only the metadata it changes
        progress("items index", 0, 1)
        folder = Path(staging) / prefix / ITEMS_INDEX_NAME
        build_items_index(folder, ((i.id, meta[i.id]) for i in source.items), source.meta_columns)
        items_archive = folder.with_name(ITEMS_ARCHIVE_NAME)
        archive_items_index(folder, items_archive)
        shutil.rmtree(folder)
        progress("items index", 1, 1)
    log.info("built dataset=%s generation=%d layout=%s stored_levels=0-%d tiles_written=%d", dataset, generation,
             "pyramid" if stored.top >= geometry.top else "chains", stored.top, sink.written)
    return Build(state, writer.finish(), meta, list(source.meta_columns), items_archive)


def plan_layout(source: Source, store: str = "auto", items_per_tile: int = ITEMS_PER_TILE_LIMIT) -> StoredLevels:
    """The stored levels a build of ``source`` will have (a diff needs the previous generation's)."""
    items, wanted = _items_and_variants(source, None)
    vids, table = _table(items, wanted)
    return _layout(Geometry(source.canvas.width, source.canvas.height), table, wanted, vids, store, items_per_tile)


def _table(items: dict[str, ItemRecord], wanted: dict[str, tuple[str, int, int]]) -> tuple[list[str], ItemTable]:
    vids = sorted(wanted)
    ordered = sorted(items.values(), key=lambda item: item.order)
    slot = {vid: i for i, vid in enumerate(vids)}
    return vids, ItemTable([i.x for i in ordered], [i.y for i in ordered], [i.width for i in ordered],
                           [i.height for i in ordered], [slot[i.variant] for i in ordered])


def _layout(geometry: Geometry, table: ItemTable, wanted: dict[str, tuple[str, int, int]], vids: list[str],
            store: str, items_per_tile: int) -> StoredLevels:
    return choose_stored_levels(geometry, table, ([wanted[v][1] for v in vids], [wanted[v][2] for v in vids]),
                                store, items_per_tile)


def _chains(source: Source, wanted: dict[str, tuple[str, int, int]], vids: list[str], old: State | None,
            writer: PackWriter, progress: Progress, threads: int) -> tuple[dict[str, VariantRecord], MipStore]:
    """Every chain back to back in one array (the sizes are known up front): the compositor reads them from
    there to render the stored levels, and new ones are written to packs from there."""
    records: dict[str, VariantRecord] = {}
    sizes = chain_sizes([wanted[vid][1] for vid in vids], [wanted[vid][2] for vid in vids])
    starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    pixels = np.empty(int(starts[-1]), dtype=np.uint8)

    rows = image_rows(source)

    def load(n: int) -> int:
        image, width, height = wanted[vids[n]]
        chain = build_chain(str(source.image_path(image)), width, height, source.canvas.background,
                            _where(source, rows, image))
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
    mips = MipStore(pixels, starts[:-1], [wanted[vid][1] for vid in vids], [wanted[vid][2] for vid in vids])
    return records, mips


def _where(source: Source, rows: dict[str, int], image: str) -> str:
    return f"{source.root / 'items.csv'} row {rows.get(image, 0)} column 6"


def _paste_leaf(geometry: Geometry, background: tuple[int, int, int], table: ItemTable, index: SpatialIndex,
                vids: list[str], covers: CoverCache) -> Callable[[int, int], np.ndarray]:
    """Tiles of the 1:1 level: every item over the tile pasted in drawing order (exact: at 1:1 each item is
    its image scaled to its rectangle), background elsewhere."""

    def leaf(x: int, y: int) -> np.ndarray:
        out = background_tile(background)
        x0, y0 = x * TILE, y * TILE
        x1, y1 = min(x0 + TILE, geometry.width), min(y0 + TILE, geometry.height)
        for i in index.query(x0, y0, x1, y1):
            ix, iy = int(table.x[i]), int(table.y[i])
            pixels = covers.get(vids[int(table.variant[i])])
            ax0, ay0 = max(x0, ix), max(y0, iy)
            ax1, ay1 = min(x1, ix + int(table.w[i])), min(y1, iy + int(table.h[i]))
            out[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] = pixels[ay0 - iy:ay1 - iy, ax0 - ix:ax1 - ix]
        return out

    return leaf


def _compose_leaf(geometry: Geometry, background: tuple[int, int, int], table: ItemTable, index: SpatialIndex,
                  mips: MipStore, z: int) -> Callable[[int, int], np.ndarray]:
    """Tiles of level ``z`` composed from the mip chains (the chains layout's finest stored level)."""
    f = geometry.factor(z)

    def leaf(x: int, y: int) -> np.ndarray:
        x0, y0 = x * TILE, y * TILE
        found = index.query(x0 * f, y0 * f, (x0 + TILE) * f, (y0 + TILE) * f)
        return render_window(Window(x0, y0, TILE, TILE, f), (geometry.width, geometry.height), background, table,
                             found, mips)

    return leaf


def changed_placements(old: State, new: State) -> list[ItemRecord]:
    """The items whose pixels changed: added, removed, moved, resized, redrawn in another order or with another
    image (old and new records both; a change of metadata alone changes no pixel)."""
    def moved(a: ItemRecord | None, b: ItemRecord | None) -> bool:
        return a is None or b is None or a.placement != b.placement

    touched = [item for item in new.items.values() if moved(old.items.get(item.id), item)]
    return touched + [item for item_id, item in old.items.items() if moved(item, new.items.get(item_id))]


def _dirty_tiles(geometry: Geometry, leaf_level: int, old: State, new: State) -> Callable[[int, int, int], bool]:
    """Tiles to make again: the leaf tiles over any item that was added, removed, moved or changed (its old
    and its new rectangle), and all their ancestors."""
    span = TILE * geometry.factor(leaf_level)
    dirty: set[tuple[int, int, int]] = set()
    touched = changed_placements(old, new)
    for item in touched:
        x0, y0 = max(item.x, 0), max(item.y, 0)
        x1, y1 = min(item.x + item.width, geometry.width), min(item.y + item.height, geometry.height)
        if x1 <= x0 or y1 <= y0:
            continue
        for ty in range(y0 // span, (y1 - 1) // span + 1):
            for tx in range(x0 // span, (x1 - 1) // span + 1):
                z, x, y = leaf_level, tx, ty
                while z >= 0 and (z, x, y) not in dirty:
                    dirty.add((z, x, y))
                    z, x, y = z - 1, x // 2, y // 2
    return lambda z, x, y: (z, x, y) in dirty


def _previous_tile(old: State, fetch: FetchBlob | None) -> Callable[[int, int, int], bytes]:
    index = old.tile_index()

    def previous(z: int, x: int, y: int) -> bytes:
        entry = index.get(z, x, y)
        if entry is None or fetch is None:
            raise ValueError(f"previous generation has no stored tile {z}/{x}/{y}")
        data = fetch(old.tile_packs[entry.pack], entry.offset, entry.length)
        if tile_digest(data) != entry.digest:
            raise ValueError(f"previous tile {z}/{x}/{y} does not match its index")
        return data

    return previous


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
        items[item.id] = ItemRecord(item.id, order, item.x, item.y, item.width, item.height, vid,
                                    meta_digest(dict(item.meta)))
    return items, wanted


def _cells(geometry: Geometry, generation: int, previous: State | None, state: State) -> list[list[int]]:
    """Per version cell, the generation its pixels last changed in (docs/architecture.md, "Versioned tile URLs")."""
    cols, rows = geometry.cell_counts()
    if previous is None or (previous.canvas.width, previous.canvas.height) != (geometry.width, geometry.height) \
            or previous.canvas.background != state.canvas.background:
        return [[generation] * cols for _ in range(rows)]
    grid = np.array(previous.cells, dtype=np.int64).reshape(rows, cols)
    touched = changed_placements(previous, state)
    for item in touched:
        x0, y0 = max(item.x, 0), max(item.y, 0)
        x1, y1 = min(item.x + item.width, geometry.width), min(item.y + item.height, geometry.height)
        if x1 > x0 and y1 > y0:
            grid[y0 // CELL_SIZE:-(-y1 // CELL_SIZE), x0 // CELL_SIZE:-(-x1 // CELL_SIZE)] = generation
    return grid.tolist()
