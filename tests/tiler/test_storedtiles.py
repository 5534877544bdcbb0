"""A stored tile decoded only as far as the rows a window needs gives exactly those rows of the whole tile."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from gigaformat.tiles import TileCodec
from tiler.storedtiles import TILE, decode_stored, decode_top_rows, encode_stored


def busy_tile(seed: int) -> np.ndarray:
    """Blocks of colour with noise over them: colour edges on every MCU row, where chroma interpolation shows."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (TILE // 8, TILE // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    return np.clip(blocks.astype(np.int16) + rng.integers(-40, 40, blocks.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("codec", [TileCodec("jpg", 95, 0), TileCodec("jpg", 88, 2), TileCodec("jpg", 85, 1)],
                         ids=["q95-444", "q88-420", "q85-422"])
def test_the_top_rows_of_a_tile_are_those_of_the_whole_tile(codec):
    data = encode_stored(busy_tile(3), codec)
    whole = decode_stored(data)
    for rows in range(1, TILE + 1):
        top = decode_top_rows(data, rows)
        assert top.shape == (rows, TILE, 3) and np.array_equal(top, whole[:rows]), rows


def test_a_progressive_tile_is_decoded_whole_and_cut():
    buffer = BytesIO()
    Image.fromarray(busy_tile(4)).save(buffer, "JPEG", quality=90, progressive=True)
    data = buffer.getvalue()
    assert np.array_equal(decode_top_rows(data, 100), decode_stored(data)[:100])
