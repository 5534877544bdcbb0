"""bench/iipsrv.py's pure parts: DeepZoom levels and the same tiles on both sides."""

from __future__ import annotations

from pathlib import Path

from bench.iipsrv import dz_max_level, level_tiles, paths_for
from gigaformat.levels import Geometry


def test_deepzoom_levels_of_the_bench_canvas() -> None:
    g = Geometry(38656, 25870)
    assert dz_max_level(g) == 16 and g.top == 8  # DeepZoom level = z + 8
    assert dz_max_level(Geometry(256, 256)) == 8 and dz_max_level(Geometry(257, 10)) == 9


def test_level_tiles_fixed_seed_distinct_then_cycled() -> None:
    g = Geometry(38656, 25870)
    tiles = level_tiles(g, g.top - 2, 2000, seed=1)
    cols, rows = g.tile_counts(g.top - 2)
    assert len(set(tiles)) == cols * rows and tiles[:cols * rows] == tiles[cols * rows:2 * cols * rows]
    assert tiles == level_tiles(g, g.top - 2, 2000, seed=1)
    interior = level_tiles(g, g.top - 2, 2000, seed=1, interior=True)
    assert max(x for x, _ in interior) == cols - 2 and max(y for _, y in interior) == rows - 2


def test_the_same_tiles_as_urls_of_both_servers() -> None:
    ours, theirs = (paths_for(side, 14, [(3, 4)], Path("/w/flat.tif")) for side in ("tiler serve", "iipsrv"))
    assert ours == ["/tiles/covers_files/14/3_4.jpg"]
    assert theirs == ["/fcgi-bin/iipsrv.fcgi?DeepZoom=/w/flat.tif_files/14/3_4.jpg"]
