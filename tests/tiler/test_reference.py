"""Every tile of every level matches the pyramid: the chains layout against an independent Pillow reference
(PSNR >= 30 dB, exact at 1:1), both layouts against the pyramid halved from a generated wall's exact 1:1."""

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
    """The awkward wall in the chains layout, once composed on demand at every level and once with its busy
    levels stored."""
    base = tmp_path_factory.mktemp("awkward")
    make_awkward_wall(base / "src")
    folder = DatasetDir(base / "node", "awkward")
    publish_local(base / "src", folder, items_per_tile=request.param, store="chains")
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
                beyond = np.concatenate([tile[h:].reshape(-1, 3), tile[:h, w:].reshape(-1, 3)]).astype(int)
                if loaded.stored.is_stored(z):  # JPEG: background, but for the ringing by the level's edge
                    assert not beyond.size or np.abs(beyond - BACKGROUND).mean() < 4.0
                else:
                    assert (beyond == BACKGROUND).all()
                worst[z] = min(worst.get(z, 99.0), psnr(tile[:h, :w], ref))
    assert all(value >= 30.0 for value in worst.values()), worst


def test_top_level_is_exact_where_items_do_not_need_scaling(wall):
    loaded, reference = wall
    top = loaded.geometry.top
    assert np.array_equal(loaded.render_tile(top, 0, 0), reference[top][:256, :256])


def test_overview_covers_exactly_the_busy_levels(wall, request):
    loaded, _ = wall
    busy = loaded.overview_level
    if request.node.callspec.id == "composed":  # 1000 items a tile allowed: every level composed, none stored
        assert busy < 0 and not any(loaded.stored.is_stored(z) for z in range(loaded.geometry.top + 1))
        return
    assert 0 <= busy < loaded.geometry.top
    top = loaded.geometry.top
    assert max(len(loaded.index.query(*loaded.geometry.tile_footprint(busy, x, y)))
               for x in range(loaded.geometry.tile_counts(busy)[0])
               for y in range(loaded.geometry.tile_counts(busy)[1])) > 8
    assert max(len(loaded.index.query(*loaded.geometry.tile_footprint(top, x, y)))
               for x in range(loaded.geometry.tile_counts(top)[0])
               for y in range(loaded.geometry.tile_counts(top)[1])) <= 8


@pytest.fixture(scope="module")
def distinct_covers(tmp_path_factory):
    """A wall of generated covers, all distinct, published in both layouts; and its exact 1:1 level."""
    base = tmp_path_factory.mktemp("distinct")
    generate_wall(base / "src", gigapixels=0.02, unique=12, seed=3, all_distinct=True)
    layouts = {}
    for store in ("chains", "pyramid"):
        folder = DatasetDir(base / store, "covers")
        publish_local(base / "src", folder, items_per_tile=1000, store=store)  # chains: compose every level
        layouts[store] = LoadedDataset.open(folder)
    g = layouts["chains"].geometry
    return layouts, layouts["chains"].render_level_window(g.top, 0, 0, g.width, g.height)


def pyramid_of(top: np.ndarray, levels: int) -> dict[int, np.ndarray]:
    """Level z of the exact pyramid, halved from its 1:1 level ``top`` (level ``levels - 1``)."""
    found = {levels - 1: top}
    for z in range(levels - 2, -1, -1):
        found[z] = halve(found[z + 1])
    return found


def worst_tile(loaded: LoadedDataset, z: int, exact: np.ndarray) -> float:
    got = loaded.render_level_window(z, 0, 0, exact.shape[1], exact.shape[0])
    return min(psnr(got[y:y + 256, x:x + 256], exact[y:y + 256, x:x + 256])
               for y in range(0, exact.shape[0], 256) for x in range(0, exact.shape[1], 256))


def test_composed_levels_match_the_pyramid_halved_from_the_exact_top_level(distinct_covers):
    """Real-looking covers at arbitrary positions (the awkward wall is mostly flat colour and noise): every
    composed level within 33 dB of the pyramid made by halving the top level (exact at 1:1, tested above)."""
    layouts, top = distinct_covers
    loaded = layouts["chains"]
    exact = pyramid_of(top, loaded.geometry.top + 1)
    worst = {z: worst_tile(loaded, z, exact[z]) for z in range(loaded.geometry.top)}
    assert min(worst.values()) >= 33.0, worst


def test_stored_levels_hold_36_db_and_the_1_to_1_level_its_codec_error(distinct_covers):
    """The pyramid layout: every coarser level (the derived one included) >= 36 dB against the exact
    pyramid in every tile; the 1:1 level JPEG's own error at its quality (>= 30 dB)."""
    layouts, top = distinct_covers
    loaded = layouts["pyramid"]
    g = loaded.geometry
    assert loaded.stored.top == g.top and loaded.stored.derived == (g.top - 1,) and not loaded.mips.width.size
    exact = pyramid_of(top, g.top + 1)
    worst = {z: worst_tile(loaded, z, exact[z]) for z in range(g.top + 1)}
    assert worst[g.top] >= 30.0 and min(worst[z] for z in range(g.top)) >= 36.0, worst
