"""Which levels of a generation are stored as encoded tiles, and which are composed from mip chains.

Two layouts, chosen per generation by what the wall costs to keep (measured: tiler/README.md, "Format"):

- **pyramid** (``store="pyramid"``): every level is stored, the 1:1 level as JPEG q88 4:2:0, every coarser
  one as JPEG q95 4:4:4, but for the level just below 1:1, derived at serve time from four 1:1 tiles (it
  would cost more bytes than all coarser levels together). No mip chains. For walls whose images are
  mostly distinct: a real bookstore, 0.8× the bytes of a JPEG q85 DeepZoom pyramid.
- **chains** (``store="chains"``): the items' mip chains, raw, composed on demand at the fine levels; only
  the levels where a tile would cover more than ``ITEMS_PER_TILE_LIMIT`` items are stored (JPEG q95
  4:4:4). For walls that show few images many times: the chains are small and shared.

``store="auto"`` takes the layout that keeps fewer bytes: the chains' raw size against the pyramid's
expected size (``PYRAMID_BYTES_PER_PIXEL`` of the canvas).
"""

from __future__ import annotations

import numpy as np

from gigaformat.levels import Geometry
from gigaformat.state import StoredLevels
from gigaformat.tiles import TileCodec
from tiler.errors import TilerError
from tiler.mips import chain_sizes
from tiler.spatial import ItemTable

ITEMS_PER_TILE_LIMIT = 160  # a composed tile draws at most this many items; busier levels are stored
FINE = TileCodec("jpg", 88, 2)  # the 1:1 level: q88 keeps the derived level >= 36 dB on real covers
COARSE = TileCodec("jpg", 95, 0)  # coarser levels: 4:2:0 would cost 6-9 dB on colourful covers
PYRAMID_BYTES_PER_PIXEL = 0.15  # measured on distinct generated covers with FINE and COARSE
STORES = ("auto", "pyramid", "chains")


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


def pyramid_levels(geometry: Geometry) -> StoredLevels:
    top = geometry.top
    return StoredLevels(top=top, derived=(top - 1,) if top >= 1 else (), fine=FINE, coarse=COARSE)


def chain_levels(geometry: Geometry, table: ItemTable, items_per_tile: int = ITEMS_PER_TILE_LIMIT) -> StoredLevels:
    return StoredLevels(top=choose_overview_level(geometry, table, items_per_tile), derived=(), fine=COARSE,
                        coarse=COARSE)


def choose_stored_levels(geometry: Geometry, table: ItemTable, variant_sizes: tuple[list[int], list[int]],
                         store: str = "auto", items_per_tile: int = ITEMS_PER_TILE_LIMIT) -> StoredLevels:
    """The stored levels of a generation of this canvas and these items (``variant_sizes``: the widths and
    heights of its distinct images-at-a-size)."""
    if store not in STORES:
        raise TilerError(f"--store {store!r}: use one of {', '.join(STORES)}")
    if store == "auto":
        chains = int(np.sum(chain_sizes(*variant_sizes))) if variant_sizes[0] else 0
        pyramid = geometry.width * geometry.height * PYRAMID_BYTES_PER_PIXEL
        store = "pyramid" if pyramid < chains else "chains"
    return pyramid_levels(geometry) if store == "pyramid" else chain_levels(geometry, table, items_per_tile)
