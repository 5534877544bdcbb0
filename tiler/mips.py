"""Mip chains: an image area-averaged by 2, 4, 8 … (pure numpy, no I/O).

Level k of a chain is level k-1 halved, sizes rounded up, the partial last row and column
averaging the pixels that exist (as ``vips dzsave`` and ``Image.reduce`` do). Mip pixel ``(u, v)``
of level k covers source pixels ``[u*2^k, (u+1)*2^k)`` — anchored at the top-left.
"""

from __future__ import annotations

import numpy as np


def halve(pixels: np.ndarray) -> np.ndarray:
    """Area-average an (h, w, c) uint8 array by 2 on both axes; partial edges average what exists."""
    h, w = pixels.shape[:2]
    if h % 2 or w % 2:
        # Replicating the last row/column makes the 2x2 mean equal the mean of the pixels that exist.
        pixels = np.pad(pixels, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    wide = pixels.astype(np.uint16)
    total = wide[0::2, 0::2] + wide[1::2, 0::2] + wide[0::2, 1::2] + wide[1::2, 1::2]
    return ((total + 2) >> 2).astype(np.uint8)


def mip_shapes(width: int, height: int, channels: int = 3) -> list[tuple[int, int, int]]:
    """Shapes (h, w, c) of every level of the chain of a width x height image, down to 1x1."""
    shapes = [(height, width, channels)]
    while shapes[-1][0] > 1 or shapes[-1][1] > 1:
        h, w, _ = shapes[-1]
        shapes.append((-(-h // 2), -(-w // 2), channels))
    return shapes


def chain_sizes(widths, heights, channels: int = 3) -> np.ndarray:
    """Bytes of the whole chain of each widths[i] x heights[i] image (int64, vectorised: a dataset may hold
    many thousand variants, and this runs at every load)."""
    w, h = np.array(widths, dtype=np.int64), np.array(heights, dtype=np.int64)
    total = w * h * channels
    while (more := (w > 1) | (h > 1)).any():
        w, h = np.where(more, (w + 1) // 2, 1), np.where(more, (h + 1) // 2, 1)
        total += np.where(more, w * h * channels, 0)
    return total


def mip_chain(pixels: np.ndarray) -> list[np.ndarray]:
    """Every level of the chain of ``pixels``, level 0 first, down to 1x1."""
    chain = [np.ascontiguousarray(pixels)]
    while chain[-1].shape[0] > 1 or chain[-1].shape[1] > 1:
        chain.append(halve(chain[-1]))
    return chain
