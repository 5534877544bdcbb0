"""Stored tiles: encoded once at publish time, decoded at serve time, and the derived level between them.

A stored tile is a whole 256×256 tile (background beyond the level's edge), encoded with its level's
``TileCodec``: JPEG by libjpeg-turbo, Huffman tables optimised (Pillow) when stored, decoded with simplejpeg.
A *derived* level is not stored: each of its tiles is the exact halving of its four children (the level
below, finer), decoded — with libjpeg-turbo's DCT scaling by 1/2 where all four children are whole tiles
inside the level (a quarter of the decoding work; ≥ 41 dB against the exact halving on real covers), fully
decoded and halved pixel by pixel at the level's edge, where only the pixels that exist may be averaged.
The publisher builds every coarser level from the same derived pixels, so both sides agree exactly.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import numpy as np
import simplejpeg
from PIL import Image

from gigaformat.levels import Geometry
from gigaformat.tiles import TileCodec
from tiler.mips import halve, halve_now

TILE = 256
SUBSAMPLING_NAMES = {0: "444", 1: "422", 2: "420"}


def encode_stored(pixels: np.ndarray, codec: TileCodec) -> bytes:
    """A whole tile's pixels as stored bytes (deterministic: the same pixels give the same bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "JPEG", quality=codec.quality,
                                                       subsampling=codec.subsampling, optimize=True)
    return buffer.getvalue()


def decode_stored(data: bytes) -> np.ndarray:
    """The (256, 256, 3) pixels of a stored tile."""
    return simplejpeg.decode_jpeg(data, "RGB")


def decode_top_rows(data: bytes, rows: int) -> np.ndarray:
    """The first ``rows`` rows of a stored tile's pixels, exactly those of ``decode_stored``, decoding no more
    than they need: a baseline JPEG's rows come in order, so its frame header is told the image is ``rows``
    tall and the decoder stops there (the bytes left over are the rest of the tile, not damage)."""
    frame = _baseline_frame(data) if 0 < rows < TILE else None  # a whole tile (most of a window's): no parsing
    if frame is None:
        return decode_stored(data)[:rows]
    at, mcu_rows = frame
    # with chroma subsampled down the rows, a row's colour is interpolated from the chroma row below it: one
    # more MCU row is decoded, so that every row kept has the neighbours it has in the whole tile
    told = rows if mcu_rows == 8 else min(TILE, -(-rows // mcu_rows) * mcu_rows + mcu_rows)
    if told >= TILE:
        return decode_stored(data)[:rows]
    shorter = bytearray(data)
    shorter[at + 5:at + 7] = told.to_bytes(2, "big")
    return simplejpeg.decode_jpeg(bytes(shorter), "RGB", strict=False)[:rows]


def _baseline_frame(data: bytes) -> tuple[int, int] | None:
    """Where the baseline (SOF0/SOF1) frame header of a JPEG starts and its MCU's height in rows, or None
    (progressive, or no frame before the scan)."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker in (0xC0, 0xC1):
            components = data[at + 9] if at + 10 <= len(data) else 0
            factors = data[at + 11:at + 11 + 3 * components:3]
            if not components or len(factors) != components:
                return None
            return at, 8 * max(f & 0x0F for f in factors)
        if marker == 0xDA:
            return None
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return None


def background_tile(background: tuple[int, int, int]) -> np.ndarray:
    """A new tile of the background colour (a copy of one made once: filling from a tuple is slow)."""
    return _background(tuple(background)).copy()


@functools.lru_cache(maxsize=8)
def _background(background: tuple[int, int, int]) -> np.ndarray:
    tile = np.empty((TILE, TILE, 3), dtype=np.uint8)
    tile[:] = np.asarray(background, dtype=np.uint8)
    return tile


def child_span(geometry: Geometry, z: int, x: int, y: int) -> tuple[int, int]:
    """How many pixels of level ``z + 1`` (finer) lie under tile (z, x, y), across and down (≤ 512 each)."""
    width, height = geometry.level_size(z + 1)
    return max(0, min(2 * TILE, width - 2 * TILE * x)), max(0, min(2 * TILE, height - 2 * TILE * y))


def derive(children: list[list[bytes | None]], span: tuple[int, int], background: tuple[int, int, int]
           ) -> np.ndarray:
    """Tile (z, x, y) of a derived level from its children's stored bytes, ``children[row][col]`` being tile
    (z + 1, 2x + col, 2y + row) or None where the level below has no such tile; ``span`` is
    ``child_span(geometry, z, x, y)``."""
    span_w, span_h = span
    whole = span_w == span_h == 2 * TILE and all(c is not None for row in children for c in row)
    if whole:
        out = np.empty((TILE, TILE, 3), dtype=np.uint8)
        half = TILE // 2
        for row in range(2):
            for col in range(2):
                out[row * half:(row + 1) * half, col * half:(col + 1) * half] = simplejpeg.decode_jpeg(
                    children[row][col], "RGB", min_height=half, min_width=half)
        return out
    return reduce_children([[None if c is None else decode_stored(c) for c in row] for row in children], span,
                           background, halving=halve_now)


def reduce_children(children: list[list[np.ndarray | None]], span: tuple[int, int],
                    background: tuple[int, int, int], halving: Callable[[np.ndarray], np.ndarray] = halve
                    ) -> np.ndarray:
    """The exact halving of the ``span`` pixels of four children's pixels (background beyond them);
    ``halving`` is ``mips.halve`` or, where one call must not wait on numba's load, ``mips.halve_now``."""
    span_w, span_h = span
    out = background_tile(background)
    if span_w <= 0 or span_h <= 0:
        return out
    block = np.tile(_background(tuple(background)), (2, 2, 1))
    for row in range(2):
        for col in range(2):
            if children[row][col] is not None:
                block[row * TILE:(row + 1) * TILE, col * TILE:(col + 1) * TILE] = children[row][col]
    small = halving(np.ascontiguousarray(block[:span_h, :span_w]))
    out[:small.shape[0], :small.shape[1]] = small
    return out
