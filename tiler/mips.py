"""Mip chains: an image area-averaged by 2, 4, 8 … (pure: numpy, and one numba kernel; no I/O).

Level k of a chain is level k-1 halved, sizes rounded up, the partial last row and column
averaging the pixels that exist (as ``vips dzsave`` and ``Image.reduce`` do). Mip pixel ``(u, v)``
of level k covers source pixels ``[u*2^k, (u+1)*2^k)`` — anchored at the top-left.
"""

from __future__ import annotations

import numpy as np

from tiler import jit
from tiler.jit import njit


@njit(cache=True, nogil=True)
def _halve(src, dst):  # pragma: no cover
    h, w, c = src.shape
    for r in range(dst.shape[0]):
        top = src[2 * r]
        bottom = src[min(2 * r + 1, h - 1)]  # the last row of an odd height stands in for the missing one
        out = dst[r]
        for col in range(w // 2):
            for ch in range(c):
                total = (np.int32(top[2 * col, ch]) + np.int32(top[2 * col + 1, ch]) + np.int32(bottom[2 * col, ch])
                         + np.int32(bottom[2 * col + 1, ch]) + 2)
                out[col, ch] = np.uint8(total >> 2)
        if w % 2:  # likewise the last column of an odd width
            for ch in range(c):
                total = 2 * np.int32(top[w - 1, ch]) + 2 * np.int32(bottom[w - 1, ch]) + 2
                out[w // 2, ch] = np.uint8(total >> 2)


def halve(pixels: np.ndarray) -> np.ndarray:
    """Area-average an (h, w, c) uint8 array by 2 on both axes, sizes rounded up; a partial last row or column
    averages the pixels that exist (as ``vips dzsave`` and ``Image.reduce`` do)."""
    h, w, c = pixels.shape
    out = np.empty((-(-h // 2), -(-w // 2), c), dtype=np.uint8)
    _halve(pixels, out)
    return out


def halve_now(pixels: np.ndarray) -> np.ndarray:
    """``halve``'s pixels, without waiting for numba: until this module's kernel is loaded in the process
    (~0.25 s the first time, numba's import and its cache), numpy's same sums do it, ~2x the kernel's time
    (0.9 against 0.4 ms for 512 x 512). For the rare edge tiles of a derived level (``storedtiles.derive``), so
    that a server worker's first one does not stall on the load; the bulk of publishing calls ``halve``, which
    loads the kernel, and its later edge tiles then take it too."""
    return halve(pixels) if jit.compiled(__name__) else _halve_numpy(pixels)


def _halve_numpy(pixels: np.ndarray) -> np.ndarray:
    h, w, _ = pixels.shape
    if h % 2:  # the last row of an odd height stands in for the missing one, as in the kernel
        pixels = np.concatenate([pixels, pixels[-1:]], axis=0)
    if w % 2:  # likewise the last column of an odd width
        pixels = np.concatenate([pixels, pixels[:, -1:]], axis=1)
    rows = np.add(pixels[0::2], pixels[1::2], dtype=np.uint16)
    total = np.add(rows[:, 0::2], rows[:, 1::2])
    total += 2
    total >>= 2
    return total.astype(np.uint8)


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
