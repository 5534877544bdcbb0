"""A dataset generation loaded for rendering: items, spatial index, mip chains and stored tiles.

Everything is read once at load (packs memory-mapped read-only, so worker processes share the
pages); a loaded generation never changes, and a newer one is loaded beside it and swapped in.
"""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from gigaformat.itemsdb import ITEMS_INDEX_NAME
from gigaformat.layout import DatasetDir
from gigaformat.levels import CELL_SIZE, Geometry
from gigaformat.state import STATE_NAME, State, collector_paused
from gigaformat.tiles import TileCodec
from tiler.coarse_raster import CoarseRaster
from tiler.compose import MipStore, Window, background_window, render_window
from tiler.encode import encode_tile
from tiler.errors import CorruptData, NotFound
from tiler.items import ItemCatalog
from tiler.lazyfetch import RemoteTiles
from tiler.mips import halve
from tiler.packspace import PackSpace
from tiler.spatial import ItemTable, SpatialIndex
from tiler.storedtiles import child_span, decode_stored, decode_top_rows, derive
from tiler.tilestore import TileStore

log = logging.getLogger(__name__)


class LoadedDataset:
    """One generation of one dataset, ready to render any tile of any level."""

    def __init__(self, state: State, packs_folder: Path, remote: RemoteTiles | None = None,
                 items_index: Path | None = None):
        self.name = state.dataset
        self.generation = state.generation
        self.geometry = Geometry(state.canvas.width, state.canvas.height)
        self.background = state.canvas.background
        self.background_hex = state.canvas.background_hex
        self.overview_level = state.overview_level
        self.stored = state.stored
        # Every chain pack mapped now, back to back: later deletions cannot break us, and the compiled
        # compositor reaches any chain through one array.
        self.packs = PackSpace(packs_folder, sorted({v.pack for v in state.variants.values()}))
        vids = sorted(state.variants)
        slot = {vid: i for i, vid in enumerate(vids)}
        records = [state.variants[vid] for vid in vids]
        self.mips = MipStore(self.packs.array, [self.packs.start[r.pack] + r.offset for r in records],
                             [r.width for r in records], [r.height for r in records])
        ordered = state.items_in_order()
        self.table = ItemTable(
            np.fromiter((i.x for i in ordered), np.int64, len(ordered)),
            np.fromiter((i.y for i in ordered), np.int64, len(ordered)),
            np.fromiter((i.width for i in ordered), np.int64, len(ordered)),
            np.fromiter((i.height for i in ordered), np.int64, len(ordered)),
            np.fromiter((slot.get(i.variant, -1) for i in ordered), np.int32, len(ordered)),  # -1: not composed
        )
        self.index = SpatialIndex(self.table, self.geometry.width, self.geometry.height)
        self.catalog = ItemCatalog([i.id for i in ordered], self.table, self.index,
                                   (self.geometry.width, self.geometry.height),
                                   items_index if items_index is not None and items_index.is_dir() else None)
        self.tile_index = state.tiles
        self.tiles = TileStore(packs_folder, state.tile_packs, remote)
        self.lazy = remote is not None  # some packs may still be arriving: their tiles come from S3
        self.cells = np.asarray(state.cells, dtype=np.int64).reshape(self.geometry.cell_counts()[::-1])
        self.items = len(ordered)
        self.loaded_at = time.time()  # Last-Modified of its documents; open() uses the state file's time
        self.coarse: CoarseRaster | None = None  # decoded coarse levels, once built (tiler.coarse_raster)
        self._first_answer: DatasetDir | None = None  # lazy: where to say its first tile is answered (once)

    @classmethod
    def open(cls, folder: DatasetDir) -> LoadedDataset:
        """The generation ``current`` points at, every pack on disk and verified."""
        started = time.monotonic()
        with collector_paused():
            state = folder.load_current_state()
            loaded = cls(state, folder.objects,
                         items_index=folder.generation_dir(state.generation) / ITEMS_INDEX_NAME)
        with contextlib.suppress(OSError):
            loaded.loaded_at = (folder.generation_dir(state.generation) / STATE_NAME).stat().st_mtime
        log.info("loaded dataset=%s generation=%d items=%d seconds=%.2f", loaded.name, loaded.generation,
                 loaded.items, time.monotonic() - started)
        return loaded

    @classmethod
    def open_lazy(cls, folder: DatasetDir, generation: int, bucket: str, prefix: str) -> LoadedDataset:
        """A staged generation whose packs are still arriving (``synch.lazy``): tiles not on disk yet are read
        from ``s3://bucket/<prefix>``."""
        started = time.monotonic()
        with collector_paused():
            state = folder.load_state(generation)
            if state.variants:
                raise CorruptData(f"{folder.dataset}@{generation} has mip chains: it cannot be served lazily")
            loaded = cls(state, folder.objects, RemoteTiles(bucket, prefix),
                         folder.generation_dir(generation) / ITEMS_INDEX_NAME)
        loaded._first_answer = folder
        log.info("loaded lazily dataset=%s generation=%d items=%d seconds=%.2f", loaded.name, loaded.generation,
                 loaded.items, time.monotonic() - started)
        return loaded

    def note_answered(self) -> None:
        """A tile of this generation was answered. The first one of a lazy generation says so, once, in
        ``synch.answered``: boxlink's held fill starts then, after the node's first viewers' tiles (its start
        beside a lazy ranged GET on 2 cores made the GET 0.3 s instead of 0.02, boxlink/apply.py)."""
        folder, self._first_answer = self._first_answer, None
        if folder is not None:
            try:
                folder.mark_answered(self.generation)
            except OSError as exc:  # the fill starts a little later: the tile is answered all the same
                log.warning("cannot write synch.answered dataset=%s error=%s", self.name, exc)

    # -- pixels ----------------------------------------------------------------------------
    def render_tile(self, z: int, x: int, y: int) -> np.ndarray:
        """Tile (z, x, y) as (256, 256, 3) uint8; raises NotFound if the level has no such tile."""
        self.check_tile(z, x, y)
        if z <= self.overview_level:
            return self._overview_tile(z, x, y)
        size = self.geometry.tile_size
        return self.render_level_window(z, x * size, y * size, size, size)

    def tile_bytes(self, z: int, x: int, y: int, fmt: str, quality: int, crop: tuple[int, int] | None = None) -> bytes:
        """What a request for tile (z, x, y) in ``fmt`` answers: a stored JPEG tile as it is stored, anything
        else rendered and encoded at ``quality`` (cropped to ``crop`` (w, h) for DeepZoom's edge tiles)."""
        if crop is None and fmt == "jpg":
            data = self.stored_tile(z, x, y)
            if data is not None:
                return data
        pixels = self.render_tile(z, x, y)
        if crop is not None:
            pixels = pixels[:crop[1], :crop[0]]
        return encode_tile(pixels, fmt, quality)

    def check_tile(self, z: int, x: int, y: int) -> None:
        """Raise NotFound, saying which tiles there are, unless tile (z, x, y) exists."""
        if not self.geometry.has_tile(z, x, y):
            cols, rows = self.geometry.tile_counts(z) if 0 <= z <= self.geometry.top else (0, 0)
            raise NotFound(f"no tile {z}/{x}/{y} in {self.name}: levels are 0-{self.geometry.top}"
                           + (f", level {z} has {cols}x{rows} tiles" if cols else ""))

    def render_level_window(self, z: int, x0: int, y0: int, width: int, height: int,
                            helper: Executor | None = None) -> np.ndarray:
        """Any window of level ``z`` (level pixels), background outside the level. With ``helper``, a window
        pasted from stored tiles (``decodes_tiles(z)``) has every other tile decoded there meanwhile."""
        if z <= self.overview_level:
            return self._overview_window(z, x0, y0, width, height, helper)
        f = self.geometry.factor(z)
        found = self.index.query(x0 * f, y0 * f, (x0 + width) * f, (y0 + height) * f)
        window = Window(x0, y0, width, height, f)
        return render_window(window, (self.geometry.width, self.geometry.height), self.background, self.table,
                             found, self.mips)

    def stored_tile(self, z: int, x: int, y: int) -> bytes | None:
        """The stored bytes of tile (z, x, y) (``stored_codec(z)``), or None if its level is not stored."""
        if not self.stored.is_stored(z):
            return None
        entry = self.tile_index.get(z, x, y)
        if entry is None:
            raise CorruptData(f"tile {z}/{x}/{y} of {self.name}@{self.generation} is missing from its index")
        return self.tiles.read(entry)

    def stored_codec(self, z: int) -> TileCodec:
        return self.stored.codec(z, self.geometry.top)

    def _overview_tile(self, z: int, x: int, y: int, rows: int | None = None) -> np.ndarray:
        """Tile (z, x, y) of a level at or below ``overview_level``; with ``rows``, only its first rows are
        wanted (a stored tile is decoded no further)."""
        coarse = self.coarse
        if coarse is not None and coarse.has(z):
            size = self.geometry.tile_size
            return coarse.window(z, x * size, y * size, size, size, self.background)
        data = self.stored_tile(z, x, y)
        if data is not None:
            return decode_stored(data) if rows is None else decode_top_rows(data, rows)
        kids = [[self.stored_tile(z + 1, 2 * x + col, 2 * y + row)
                 if self.geometry.has_tile(z + 1, 2 * x + col, 2 * y + row) else None for col in range(2)]
                for row in range(2)]
        return derive(kids, child_span(self.geometry, z, x, y), self.background)

    def decodes_tiles(self, z: int) -> bool:
        """True when a window of level ``z`` is pasted from stored tiles, each decoded (or derived) apart."""
        return z <= self.overview_level and not (self.coarse is not None and self.coarse.has(z))

    def _overview_window(self, z: int, x0: int, y0: int, width: int, height: int,
                         helper: Executor | None = None) -> np.ndarray:
        coarse = self.coarse
        if coarse is not None and coarse.has(z):
            return coarse.window(z, x0, y0, width, height, self.background)
        size = self.geometry.tile_size
        out = background_window(height, width, self.background)
        tiles = [(tx, ty) for ty in range(max(0, y0 // size), (y0 + height - 1) // size + 1)
                 for tx in range(max(0, x0 // size), (x0 + width - 1) // size + 1) if self.geometry.has_tile(z, tx, ty)]

        def paste(some: list[tuple[int, int]]) -> None:  # each tile into its own part of ``out``
            for tx, ty in some:
                ax0, ay0 = max(x0, tx * size), max(y0, ty * size)
                ax1, ay1 = min(x0 + width, (tx + 1) * size), min(y0 + height, (ty + 1) * size)
                tile = self._overview_tile(z, tx, ty, ay1 - ty * size)
                out[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] = tile[ay0 - ty * size:ay1 - ty * size,
                                                                 ax0 - tx * size:ax1 - tx * size]

        if helper is None or len(tiles) < 2:
            paste(tiles)
            return out
        other = helper.submit(paste, tiles[1::2])
        try:
            paste(tiles[0::2])
        finally:
            other.result()
        return out

    def render_below_zero(self, steps: int) -> np.ndarray:
        """The whole canvas halved ``steps`` more times than level 0 (DeepZoom's smallest levels)."""
        width, height = self.geometry.level_size(0)
        pixels = self.render_tile(0, 0, 0)[:height, :width]
        for _ in range(steps):
            pixels = halve(pixels)
        return pixels

    # -- versions --------------------------------------------------------------------------
    def tile_version(self, z: int, x: int, y: int) -> int:
        """The newest generation in which any pixel under tile (z, x, y) changed."""
        cx0, cy0, cx1, cy1 = self.geometry.tile_cells(z, x, y)
        block = self.cells[cy0:max(cy1, cy0 + 1), cx0:max(cx1, cx0 + 1)]
        return int(block.max()) if block.size else self.generation

    def info(self) -> dict:
        g = self.geometry
        cols, rows = g.cell_counts()
        return {
            "dataset": self.name, "generation": self.generation, "width": g.width, "height": g.height,
            "tile_size": g.tile_size, "levels": g.top + 1, "top_level": g.top, "background": self.background_hex,
            "formats": ["jpg", "png", "webp"], "items": self.items, "meta_columns": self.catalog.columns,
            "versions": {"cell_size": CELL_SIZE, "cols": cols, "rows": rows, "cells": self.cells.tolist()},
        }
