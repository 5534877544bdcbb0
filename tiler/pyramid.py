"""Build the stored levels of a generation tile by tile, in bounded memory: leaves composed, every coarser
tile reduced from its four children, stored tiles handed to a sink as they are made.

The walk is depth first (Z-order), so at any moment it holds one path of tiles from the root down, and the
leaves it composes one after the other are neighbours (``covers.CoverCache`` decodes each image about
once). Subtrees ``SUBTREE_DEPTH`` levels deep are built on ``threads`` threads and their tiles written in a
fixed order, so the same source gives the same pack bytes (a re-run after a crash skips what is uploaded).
For a diff, only *dirty* tiles (over changed items, and their ancestors) are made; a clean child comes from
the previous generation's stored bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gigaformat.levels import Geometry
from gigaformat.state import StoredLevels
from tiler.storedtiles import child_span, decode_stored, derive, encode_stored, reduce_children

SUBTREE_DEPTH = 6  # a subtree of 64 x 64 leaf tiles (16k px at 1:1): its images fit the cover cache


class TileSink(Protocol):
    def put(self, z: int, x: int, y: int, data: bytes) -> None: ...


@dataclass(frozen=True)
class PyramidPlan:
    """What to build: the stored levels of ``geometry``, leaves at ``leaf_level`` from ``leaf(x, y)``."""

    geometry: Geometry
    background: tuple[int, int, int]
    stored: StoredLevels
    leaf: Callable[[int, int], np.ndarray]  # (x, y) -> the 256x256 pixels of leaf tile (leaf_level, x, y)
    dirty: Callable[[int, int, int], bool] = lambda z, x, y: True
    previous: Callable[[int, int, int], bytes] | None = None  # a clean tile's stored bytes (diffs)

    @property
    def leaf_level(self) -> int:
        return self.stored.top


@dataclass
class _Made:
    data: bytes | None  # stored bytes, None for a derived tile
    pixels: np.ndarray | None = None  # None for a stored tile until someone needs them

    def decoded(self) -> np.ndarray:
        if self.pixels is None:
            self.pixels = decode_stored(self.data)
        return self.pixels


@dataclass
class _Walk:
    plan: PyramidPlan
    puts: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    roots: dict[tuple[int, int, int], _Made | None] = field(default_factory=dict)  # subtrees built already

    def tile(self, z: int, x: int, y: int) -> _Made | None:
        plan = self.plan
        if (z, x, y) in self.roots:
            return self.roots[(z, x, y)]
        if not plan.geometry.has_tile(z, x, y):
            return None
        if not plan.dirty(z, x, y):
            return self._previous(z, x, y)
        if z == plan.leaf_level:
            return self._store(z, x, y, plan.leaf(x, y))
        kids = [[self.tile(z + 1, 2 * x + col, 2 * y + row) for col in range(2)] for row in range(2)]
        span = child_span(plan.geometry, z, x, y)
        if z in plan.stored.derived:
            return _Made(None, derive([[k.data if k else None for k in row] for row in kids], span, plan.background))
        pixels = reduce_children([[k.decoded() if k else None for k in row] for row in kids], span, plan.background)
        return self._store(z, x, y, pixels)

    def _store(self, z: int, x: int, y: int, pixels: np.ndarray) -> _Made:
        plan = self.plan
        if not plan.stored.is_stored(z):  # a derived leaf level cannot be: leaves are stored
            return _Made(None, pixels)
        data = encode_stored(pixels, plan.stored.codec(z, plan.geometry.top))
        self.puts.append((z, x, y, data))
        return _Made(data)

    def _previous(self, z: int, x: int, y: int) -> _Made:
        plan = self.plan
        if plan.previous is None:
            raise ValueError(f"tile {z}/{x}/{y} is clean but there is no previous generation")
        if plan.stored.is_stored(z):
            return _Made(plan.previous(z, x, y))
        kids = [[plan.previous(z + 1, 2 * x + col, 2 * y + row)
                 if plan.geometry.has_tile(z + 1, 2 * x + col, 2 * y + row) else None for col in range(2)]
                for row in range(2)]
        return _Made(None, derive(kids, child_span(plan.geometry, z, x, y), plan.background))


def _subtree(plan: PyramidPlan, z: int, x: int, y: int) -> tuple[_Made | None, list[tuple[int, int, int, bytes]]]:
    walk = _Walk(plan)
    return walk.tile(z, x, y), walk.puts


def build_pyramid(plan: PyramidPlan, sink: TileSink, threads: int = 2,
                  progress: Callable[[int, int], None] = lambda done, total: None) -> None:
    """Make every dirty tile of levels 0..``plan.leaf_level`` and ``sink.put`` each stored one, subtree by
    subtree in a fixed order, coarse levels last."""
    if plan.leaf_level < 0:
        return
    split = max(0, plan.leaf_level - SUBTREE_DEPTH)
    cols, rows = plan.geometry.tile_counts(split)
    walk = _Walk(plan)
    pending: deque = deque()
    done = 0

    def drain() -> None:
        nonlocal done
        key, future = pending.popleft()
        root, puts = future.result()
        walk.roots[key] = root
        for put in puts:
            sink.put(*put)
        done += 1
        progress(done, cols * rows)

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="pyramid") as pool:
        for y in range(rows):
            for x in range(cols):
                pending.append(((split, x, y), pool.submit(_subtree, plan, split, x, y)))
                if len(pending) >= 2 * max(1, threads):  # bounded: memory holds a few subtrees, not the wall
                    drain()
        while pending:
            drain()
    if split > 0:
        walk.tile(0, 0, 0)
        for put in walk.puts:
            sink.put(*put)
