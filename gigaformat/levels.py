"""Level and tile geometry of a canvas (pure functions, no I/O).

Level ``top`` is the 1:1 canvas; level ``z`` is it area-averaged by ``2 ** (top - z)``
with sizes rounded up, anchored at the top-left; level 0 fits in one tile.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

TILE_SIZE = 256
CELL_SIZE = 4096  # canvas pixels per side of a version cell (docs/architecture.md, versioned tile URLs)


def top_level(width: int, height: int, tile_size: int = TILE_SIZE) -> int:
    """``ceil(log2(max(width, height) / tile_size))``, and 0 for a canvas that fits one tile."""
    longest = max(width, height)
    if longest <= tile_size:
        return 0
    return math.ceil(math.log2(longest / tile_size))


@dataclass(frozen=True)
class Geometry:
    """Sizes of every level of one canvas."""

    width: int
    height: int
    tile_size: int = TILE_SIZE

    @functools.cached_property
    def top(self) -> int:  # kept: every tile asks (a frozen dataclass's cached_property writes its __dict__)
        return top_level(self.width, self.height, self.tile_size)

    @functools.cached_property
    def _tile_counts(self) -> tuple[tuple[int, int], ...]:
        return tuple(map(self._count_tiles, range(self.top + 1)))

    def _count_tiles(self, z: int) -> tuple[int, int]:
        w, h = self.level_size(z)
        t = self.tile_size
        return -(-w // t), -(-h // t)

    def factor(self, z: int) -> int:
        """Canvas pixels per level pixel along one side at level ``z``."""
        return 1 << (self.top - z)

    def level_size(self, z: int) -> tuple[int, int]:
        f = self.factor(z)
        return -(-self.width // f), -(-self.height // f)

    def tile_counts(self, z: int) -> tuple[int, int]:
        return self._tile_counts[z] if 0 <= z <= self.top else self._count_tiles(z)

    def has_tile(self, z: int, x: int, y: int) -> bool:
        if not 0 <= z <= self.top:
            return False
        cols, rows = self._tile_counts[z]
        return 0 <= x < cols and 0 <= y < rows

    def tile_footprint(self, z: int, x: int, y: int) -> tuple[int, int, int, int]:
        """Canvas rectangle ``(x0, y0, x1, y1)`` under tile (z, x, y), clipped to the canvas."""
        span = self.tile_size * self.factor(z)
        x0, y0 = x * span, y * span
        return x0, y0, min(x0 + span, self.width), min(y0 + span, self.height)

    def cell_counts(self) -> tuple[int, int]:
        return -(-self.width // CELL_SIZE), -(-self.height // CELL_SIZE)

    def tile_cells(self, z: int, x: int, y: int) -> tuple[int, int, int, int]:
        """Version cells ``(cx0, cy0, cx1, cy1)`` (half-open) that tile (z, x, y) overlaps."""
        x0, y0, x1, y1 = self.tile_footprint(z, x, y)
        return x0 // CELL_SIZE, y0 // CELL_SIZE, -(-x1 // CELL_SIZE), -(-y1 // CELL_SIZE)
