"""The bookstore's questions about a loaded generation: which item is drawn at a pixel, one item, the items
in a rectangle, and ranked full-text search over their metadata (Tantivy, ``gigaformat.itemsdb``).

Geometry comes from the generation's item table and grid (in memory: a hit-test touches one grid cell);
metadata from its items index. Every answer is a list of items,
``{"id", "x", "y", "width", "height", "meta": {column: value}}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gigaformat.itemsdb import ItemsIndex, search_words
from tiler.errors import BadRequest, NotFound

MAX_WORDS = 8


class ItemCatalog:
    """The items of one loaded generation: ``ids`` in drawing order, their rectangles in ``table``."""

    def __init__(self, ids: list[str], table, index, canvas: tuple[int, int], items_index: Path | None = None):
        self.ids = ids
        self.position = {item_id: n for n, item_id in enumerate(ids)}
        self.table = table
        self.index = index
        self.canvas = canvas
        self.metadata = ItemsIndex(items_index) if items_index is not None else None  # None: the generation has none
        self.columns = self.metadata.columns if self.metadata is not None else []

    # -- answers ------------------------------------------------------------------------------------------
    def describe(self, positions: list[int]) -> list[dict]:
        """The items at ``positions`` (drawing order indices), with their metadata."""
        ids = [self.ids[n] for n in positions]
        meta = self._meta(ids)
        return [{"id": item_id, "x": int(self.table.x[n]), "y": int(self.table.y[n]), "width": int(self.table.w[n]),
                 "height": int(self.table.h[n]), "meta": meta.get(item_id, {})} for n, item_id in zip(positions, ids,
                                                                                                      strict=True)]

    def _meta(self, ids: list[str]) -> dict[str, dict]:
        return self.metadata.meta(ids) if self.metadata is not None and ids else {}

    def at(self, x: int, y: int) -> dict:
        """The topmost item drawn at canvas pixel (x, y); NotFound where only the background shows."""
        width, height = self.canvas
        if not (0 <= x < width and 0 <= y < height):
            raise NotFound(f"pixel ({x}, {y}) is outside the {width}x{height} canvas")
        found = self.index.query(x, y, x + 1, y + 1)
        if not len(found):
            raise NotFound(f"no item at ({x}, {y}): only the background shows there")
        return self.describe([int(found.max())])[0]  # the last drawn is on top

    def one(self, item_id: str) -> dict:
        n = self.position.get(item_id)
        if n is None:
            raise NotFound(f"no item {item_id!r}")
        return self.describe([n])[0]

    def within(self, bbox: tuple[int, int, int, int], limit: int) -> dict:
        """The items drawn in canvas rectangle ``bbox`` (x, y, w, h), in drawing order, at most ``limit``."""
        x, y, w, h = bbox
        width, height = self.canvas
        x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
        found = self.index.query(x0, y0, x1, y1) if x1 > x0 and y1 > y0 else np.empty(0, np.int32)
        return {"total": int(len(found)), "items": self.describe([int(n) for n in found[:limit]])}

    def search(self, query: str, filters: tuple[tuple[str, str], ...], limit: int, offset: int) -> dict:
        """Items whose metadata holds every word of ``query`` (each also as a word's start), best first (BM25),
        that have ``column = value`` for every filter; ``{"total", "items"}``."""
        unknown = [name for name, _ in filters if name not in self.columns]
        if unknown:
            raise BadRequest(f"no metadata column {unknown[0]!r}; the columns are {', '.join(self.columns) or 'none'}")
        words = search_words(query, self.metadata.cjk_pairs if self.metadata else True, limit=MAX_WORDS)
        if not words and not filters:
            raise BadRequest("search needs q (words to find) or a filter (column=value)")
        if self.metadata is None:
            return {"total": 0, "items": []}
        total, ids = self.metadata.search(words, filters, limit, offset)
        positions = [self.position[item_id] for item_id in ids if item_id in self.position]
        return {"total": total, "items": self.describe(positions)}
