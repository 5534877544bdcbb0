"""Coarse levels rendered once at publish time, so no tile needs work proportional to the wall.

Levels where one tile would cover more than ``limit`` items are pre-rendered: the finest such
level is composed from the items' mip chains, and each coarser one is the level below halved,
exactly as a pyramid built by halving holds it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from gigaformat.levels import Geometry
from tiler.compose import MipStore, Window, render_window
from tiler.mips import halve
from tiler.spatial import ItemTable, SpatialIndex

ITEMS_PER_TILE_LIMIT = 160  # a composed tile draws at most this many items; busier levels are pre-rendered
STRIP = 2048  # level pixels per side of a composition window


def max_items_per_tile(geometry: Geometry, table: ItemTable, z: int) -> int:
    """The largest number of items any tile of level ``z`` overlaps."""
    if len(table) == 0:
        return 0
    span = geometry.tile_size * geometry.factor(z)
    x0 = np.clip(table.x, 0, geometry.width)
    y0 = np.clip(table.y, 0, geometry.height)
    x1 = np.clip(table.x + table.w, 0, geometry.width)
    y1 = np.clip(table.y + table.h, 0, geometry.height)
    seen = (x1 > x0) & (y1 > y0)
    tx0, ty0 = x0[seen] // span, y0[seen] // span
    nx, ny = (x1[seen] - 1) // span - tx0 + 1, (y1[seen] - 1) // span - ty0 + 1
    cols, _ = geometry.tile_counts(z)
    counts = np.zeros(geometry.tile_counts(z)[0] * geometry.tile_counts(z)[1], dtype=np.int64)
    for dy in range(int(ny.max(initial=1))):
        for dx in range(int(nx.max(initial=1))):
            hit = (dx < nx) & (dy < ny)
            np.add.at(counts, (ty0[hit] + dy) * cols + tx0[hit] + dx, 1)
    return int(counts.max(initial=0))


def choose_overview_level(geometry: Geometry, table: ItemTable, limit: int = ITEMS_PER_TILE_LIMIT) -> int:
    """The finest level whose busiest tile covers more than ``limit`` items; -1 if none does."""
    for z in range(geometry.top, -1, -1):
        if max_items_per_tile(geometry, table, z) > limit:
            return z
    return -1


def compose_level(geometry: Geometry, background: tuple[int, int, int], table: ItemTable,
                  index: SpatialIndex, mips: MipStore, z: int) -> np.ndarray:
    """The whole of level ``z`` composed from the items, (h, w, 3) uint8."""
    width, height = geometry.level_size(z)
    f = geometry.factor(z)
    level = np.empty((height, width, 3), dtype=np.uint8)
    for y0 in range(0, height, STRIP):
        for x0 in range(0, width, STRIP):
            w, h = min(STRIP, width - x0), min(STRIP, height - y0)
            found = index.query(x0 * f, y0 * f, (x0 + w) * f, (y0 + h) * f)
            window = Window(x0, y0, w, h, f)
            level[y0:y0 + h, x0:x0 + w] = render_window(
                window, (geometry.width, geometry.height), background, table, found, mips)
    return level


def encode_overview_tile(pixels: np.ndarray) -> bytes:
    """Overview tiles are stored raw (256x256x3 bytes): serving one costs a copy, not a decode, and the
    coarse levels stay exact (a JPEG round trip of colourful covers costs ~6 dB at 4:2:0)."""
    return np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()


def cut_tiles(level: np.ndarray, z: int, background: tuple[int, int, int],
              tile_size: int = 256) -> Iterator[tuple[str, np.ndarray]]:
    """("z/x/y", 256x256 pixels) of every tile of a level, background where the level has none."""
    height, width = level.shape[:2]
    for ty in range(-(-height // tile_size)):
        for tx in range(-(-width // tile_size)):
            part = level[ty * tile_size:(ty + 1) * tile_size, tx * tile_size:(tx + 1) * tile_size]
            if part.shape[:2] != (tile_size, tile_size):
                full = np.empty((tile_size, tile_size, 3), dtype=np.uint8)
                full[:] = background
                full[:part.shape[0], :part.shape[1]] = part
                part = full
            yield f"{z}/{tx}/{ty}", part


def overview_levels(geometry: Geometry, background: tuple[int, int, int], table: ItemTable,
                    index: SpatialIndex, mips: MipStore, overview_level: int) -> Iterator[tuple[int, np.ndarray]]:
    """(z, level pixels) for z = overview_level down to 0."""
    if overview_level < 0:
        return
    level = compose_level(geometry, background, table, index, mips, overview_level)
    yield overview_level, level
    for z in range(overview_level - 1, -1, -1):
        level = halve(level)
        yield z, level
