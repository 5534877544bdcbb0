"""Which items overlap a rectangle: a uniform grid over the canvas (pure numpy).

A query touches only the grid cells under the rectangle, so its cost follows the items there,
never the number of items in the wall.
"""

from __future__ import annotations

import numpy as np

GRID = 2048  # canvas pixels per grid cell side: a 1:1 tile touches at most 4 cells


class ItemTable:
    """Item rectangles in drawing order; index i is the i-th item drawn."""

    def __init__(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, h: np.ndarray, variant: np.ndarray):
        self.x = np.asarray(x, dtype=np.int64)
        self.y = np.asarray(y, dtype=np.int64)
        self.w = np.asarray(w, dtype=np.int64)
        self.h = np.asarray(h, dtype=np.int64)
        self.variant = np.asarray(variant, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.x)


class SpatialIndex:
    """Grid of cells -> item indices (CSR arrays), built once per loaded generation."""

    def __init__(self, table: ItemTable, canvas_width: int, canvas_height: int, grid: int = GRID):
        self.table = table
        self.grid = grid
        self.cols = max(1, -(-canvas_width // grid))
        self.rows = max(1, -(-canvas_height // grid))
        x0 = np.clip(table.x, 0, canvas_width)
        y0 = np.clip(table.y, 0, canvas_height)
        x1 = np.clip(table.x + table.w, 0, canvas_width)
        y1 = np.clip(table.y + table.h, 0, canvas_height)
        visible = np.flatnonzero((x1 > x0) & (y1 > y0))
        cx0, cy0 = x0[visible] // grid, y0[visible] // grid
        cx1, cy1 = (x1[visible] - 1) // grid, (y1[visible] - 1) // grid
        spans_x, spans_y = cx1 - cx0 + 1, cy1 - cy0 + 1
        per_item = spans_x * spans_y
        owner = np.repeat(np.arange(len(visible)), per_item)
        # Position of each entry inside its item's block of cells, then its (col, row).
        offset = np.arange(len(owner)) - np.repeat(np.cumsum(per_item) - per_item, per_item)
        col = cx0[owner] + offset % spans_x[owner]
        row = cy0[owner] + offset // spans_x[owner]
        cell = row * self.cols + col
        order = np.lexsort((visible[owner], cell))
        self.items = visible[owner][order].astype(np.int32)
        counts = np.bincount(cell, minlength=self.rows * self.cols)
        self.starts = np.concatenate(([0], np.cumsum(counts)))

    def query(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Indices (ascending, i.e. drawing order) of items overlapping canvas rect [x0,x1) x [y0,y1)."""
        if x1 <= x0 or y1 <= y0:
            return np.empty(0, dtype=np.int32)
        g = self.grid
        c0, c1 = max(0, x0 // g), min(self.cols - 1, (x1 - 1) // g)
        r0, r1 = max(0, y0 // g), min(self.rows - 1, (y1 - 1) // g)
        if c1 < c0 or r1 < r0:  # the rect lies wholly beside the canvas
            return np.empty(0, dtype=np.int32)
        parts = [self.items[self.starts[r * self.cols + c0]:self.starts[r * self.cols + c1 + 1]]
                 for r in range(r0, r1 + 1)]
        found = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if c1 > c0 or r1 > r0:
            found = np.unique(found)  # an item under several cells is listed once per cell
        t = self.table
        keep = ((t.x[found] < x1) & (t.x[found] + t.w[found] > x0)
                & (t.y[found] < y1) & (t.y[found] + t.h[found] > y0))
        return found[keep]
