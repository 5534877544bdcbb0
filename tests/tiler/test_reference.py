"""Every tile of every level matches an independent Pillow reference of the pyramid (PSNR >= 30 dB)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gigaformat.layout import DatasetDir
from tests.tiler.awkward_wall import BACKGROUND, make_awkward_wall, psnr, reference_levels
from tiler.dataset import LoadedDataset
from tiler.encode import encode_tile
from tiler.generate import generate_wall
from tiler.local_publish import publish_local
from tiler.mips import halve


@pytest.fixture(scope="module", params=[1000, 8], ids=["composed", "overview"])
def wall(request, tmp_path_factory):
    """The awkward wall, once composed on demand at every level and once with pre-rendered overviews."""
    base = tmp_path_factory.mktemp("awkward")
    make_awkward_wall(base / "src")
    folder = DatasetDir(base / "node", "awkward")
    publish_local(base / "src", folder, items_per_tile=request.param)
    return LoadedDataset.open(folder), reference_levels(base / "src")


def test_every_png_tile_matches_the_reference(wall):
    loaded, reference = wall
    g = loaded.geometry
    worst: dict[int, float] = {}
    for z in range(g.top + 1):
        cols, rows = g.tile_counts(z)
        for ty in range(rows):
            for tx in range(cols):
                png = encode_tile(loaded.render_tile(z, tx, ty), "png")
                tile = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
                ref = reference[z][ty * 256:(ty + 1) * 256, tx * 256:(tx + 1) * 256]
                h, w = ref.shape[:2]
                assert (tile[h:] == BACKGROUND).all() and (tile[:, w:] == BACKGROUND).all()
                worst[z] = min(worst.get(z, 99.0), psnr(tile[:h, :w], ref))
    assert all(value >= 30.0 for value in worst.values()), worst


def test_top_level_is_exact_where_items_do_not_need_scaling(wall):
    loaded, reference = wall
    top = loaded.geometry.top
    assert np.array_equal(loaded.render_tile(top, 0, 0), reference[top][:256, :256])


def test_overview_covers_exactly_the_busy_levels(wall):
    loaded, _ = wall
    busy = loaded.overview_level
    if busy < 0:
        return
    assert 0 <= busy < loaded.geometry.top
    top = loaded.geometry.top
    assert max(len(loaded.index.query(*loaded.geometry.tile_footprint(busy, x, y)))
               for x in range(loaded.geometry.tile_counts(busy)[0])
               for y in range(loaded.geometry.tile_counts(busy)[1])) > 8
    assert max(len(loaded.index.query(*loaded.geometry.tile_footprint(top, x, y)))
               for x in range(loaded.geometry.tile_counts(top)[0])
               for y in range(loaded.geometry.tile_counts(top)[1])) <= 8


def test_generated_covers_match_the_pyramid_halved_from_their_own_top_level(tmp_path):
    """Real-looking covers at arbitrary positions (the awkward wall is mostly flat colour and noise): every
    composed level within 33 dB of the pyramid made by halving the top level (exact at 1:1, tested above)."""
    generate_wall(tmp_path / "src", gigapixels=0.02, unique=12, seed=3)
    folder = DatasetDir(tmp_path / "node", "covers")
    publish_local(tmp_path / "src", folder, items_per_tile=1000)  # compose every level on demand
    loaded = LoadedDataset.open(folder)
    g = loaded.geometry
    level = loaded.render_level_window(g.top, 0, 0, g.width, g.height)
    worst: dict[int, float] = {}
    for z in range(g.top - 1, -1, -1):
        level = halve(level)
        got = loaded.render_level_window(z, 0, 0, level.shape[1], level.shape[0])
        worst[z] = min(psnr(got[y:y + 256, x:x + 256], level[y:y + 256, x:x + 256])
                       for y in range(0, level.shape[0], 256) for x in range(0, level.shape[1], 256))
    assert min(worst.values()) >= 33.0, worst
