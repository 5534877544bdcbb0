"""Halving by numpy gives the numba kernel's pixels, and a server's first edge tile does not load numba."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tiler import mips


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_numpy_halving_gives_the_kernels_pixels(height, width, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert np.array_equal(mips._halve_numpy(pixels), mips.halve(pixels))


def test_a_whole_block_halves_alike():
    pixels = np.random.default_rng(7).integers(0, 256, (512, 511, 3), dtype=np.uint8)
    assert np.array_equal(mips._halve_numpy(pixels), mips.halve(pixels))


def test_an_edge_tile_of_a_derived_level_does_not_load_numba():
    script = """
import sys
import numpy as np
from tiler.storedtiles import TILE, derive, encode_stored
from gigaformat.tiles import TileCodec
tile = np.random.default_rng(1).integers(0, 256, (TILE, TILE, 3), dtype=np.uint8)
data = encode_stored(tile, TileCodec("jpg", 85, 1))
out = derive([[data, None], [data, None]], (300, 512), (10, 20, 30))
assert out.shape == (TILE, TILE, 3) and (out[0, 200] == (10, 20, 30)).all()
print("numba" in sys.modules)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "False"
