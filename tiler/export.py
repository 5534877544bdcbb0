"""``tiler render``: export a pyramid (or a level range / region) to a DeepZoom folder, in parallel.

Each worker process opens the dataset itself (packs are memory-mapped, so they share the pages)
and renders a share of the tiles; the parent only counts progress. Output is what any DeepZoom
client reads: ``<name>.dzi`` and ``<name>_files/<level>/<col>_<row>.<fmt>``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from gigaformat import deepzoom
from gigaformat.layout import DatasetDir
from gigaformat.levels import Geometry
from tiler.dataset import LoadedDataset
from tiler.encode import encode_tile
from tiler.errors import TilerError

log = logging.getLogger(__name__)

BATCH = 256  # tiles per task: large enough to amortise scheduling, small enough to balance


@dataclass(frozen=True)
class ExportPlan:
    out: Path
    name: str
    fmt: str
    quality: int
    levels: tuple[int, int]  # DeepZoom levels, inclusive
    region: tuple[int, int, int, int] | None  # canvas x, y, w, h


def tiles_of(geometry: Geometry, plan: ExportPlan) -> Iterator[tuple[int, int, int]]:
    """(DeepZoom level, col, row) of every tile the plan writes, coarse levels first."""
    top = deepzoom.max_level(geometry.width, geometry.height)
    for level in range(plan.levels[0], plan.levels[1] + 1):
        z = geometry.top - (top - level)
        if z < 0:
            yield level, 0, 0
            continue
        cols, rows = geometry.tile_counts(z)
        c0, r0, c1, r1 = 0, 0, cols, rows
        if plan.region is not None:
            x, y, w, h = plan.region
            span = geometry.tile_size * geometry.factor(z)
            c0, r0 = max(0, x // span), max(0, y // span)
            c1, r1 = min(cols, -(-(x + w) // span)), min(rows, -(-(y + h) // span))
        for row in range(r0, r1):
            for col in range(c0, c1):
                yield level, col, row


def _render_batch(folder: DatasetDir, plan: ExportPlan, batch: list[tuple[int, int, int]]) -> int:
    ds = _worker_dataset(folder)
    for level, col, row in batch:
        tile = deepzoom.locate(ds.geometry, level, col, row)
        if tile.crop is None:
            pixels = ds.render_below_zero(-tile.z)
        else:
            pixels = ds.render_tile(tile.z, col, row)[:tile.crop[1], :tile.crop[0]]
        path = plan.out / f"{plan.name}_files" / str(level) / f"{col}_{row}.{plan.fmt}"
        path.write_bytes(encode_tile(pixels, plan.fmt, plan.quality))
    return len(batch)


_LOADED: dict[tuple[str, str], LoadedDataset] = {}


def _worker_dataset(folder: DatasetDir) -> LoadedDataset:
    key = (str(folder.root), folder.dataset)
    if key not in _LOADED:
        _LOADED[key] = LoadedDataset.open(folder)
    return _LOADED[key]


def export_deepzoom(folder: DatasetDir, plan: ExportPlan, workers: int = 0,
                    progress: Callable[[int, int], None] = lambda done, total: None) -> tuple[int, float]:
    """Write the plan's tiles; return (tiles written, seconds)."""
    started = time.monotonic()
    ds = LoadedDataset.open(folder)
    g = ds.geometry
    top = deepzoom.max_level(g.width, g.height)
    if not 0 <= plan.levels[0] <= plan.levels[1] <= top:
        raise TilerError(f"levels must lie within 0-{top} (DeepZoom numbering)")
    tiles = list(tiles_of(g, plan))
    for level in {t[0] for t in tiles}:
        (plan.out / f"{plan.name}_files" / str(level)).mkdir(parents=True, exist_ok=True)
    (plan.out / f"{plan.name}.dzi").write_text(deepzoom.dzi_document(g.width, g.height, plan.fmt, g.tile_size))
    batches = [tiles[i:i + BATCH] for i in range(0, len(tiles), BATCH)]
    workers = workers or os.cpu_count() or 1
    done = 0
    if workers == 1:
        _LOADED[(str(folder.root), folder.dataset)] = ds
        for batch in batches:
            done += _render_batch(folder, plan, batch)
            progress(done, len(tiles))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for future in as_completed([pool.submit(_render_batch, folder, plan, b) for b in batches]):
                done += future.result()
                progress(done, len(tiles))
    seconds = time.monotonic() - started
    log.info("exported tiles=%d seconds=%.2f rate=%.0f/s", done, seconds, done / max(seconds, 1e-9))
    return done, seconds
