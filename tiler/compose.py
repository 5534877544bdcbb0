"""Compose a window of one level from items (pure, no I/O; the inner loops compiled by numba).

A level pixel at factor f = 2^k is the mean of the f x f canvas pixels under it. An item's mip
level k holds its pixels already averaged by f, so placing it is a resampling by less than one
level pixel: each level pixel takes the area-weighted mean of the mip pixels under it (an exact box
filter of the stored mip) and is blended over what lies below by the fraction of it the item covers.

An item whose corner lies on the level's pixel grid is read from its mip level k: a plain copy,
exact. Any other item is read from mip level k-1 with a box two mip pixels wide, which is exact at
factor 2 and within a fraction of a mip pixel of exact beyond.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from tiler.spatial import ItemTable

MipLookup = Callable[[int, int], np.ndarray]  # (variant, k) -> (h, w, 3) uint8 mip level k
MAX_TAPS = 3


@dataclass(frozen=True)
class Window:
    """A window of level pixels: origin (x0, y0), size, at ``factor`` canvas pixels per level pixel."""

    x0: int
    y0: int
    width: int
    height: int
    factor: int


@njit(cache=True, nogil=True)
def _axis(start, length, canvas, factor, win0, win_len, mip_len, scale, cover, first, weights):  # pragma: no cover
    """Fill cover/first/weights for one axis; return (first output pixel, count), count 0 if none."""
    c0 = max(start, 0)
    c1 = min(start + length, canvas)
    if c1 <= c0:
        return 0, 0
    f = float(factor)
    a0, a1, origin, level_end = c0 / f, c1 / f, start / f, canvas / f
    i0 = max(int(np.floor(a0)), win0)
    i1 = min(int(np.ceil(a1)), win0 + win_len)
    if i1 <= i0:
        return 0, 0
    for j in range(i1 - i0):
        lo = float(i0 + j)
        hi = min(lo + 1.0, level_end)  # the level's last pixel may be partial
        s, e = max(lo, a0), min(hi, a1)
        cover[j] = (e - s) / (hi - lo)
        u_s, u_e = (s - origin) * scale, (e - origin) * scale
        base = np.floor(u_s)
        span = max(u_e - u_s, 1e-12)
        for t in range(scale + 1):
            tap = base + t
            weight = (min(u_e, tap + 1.0) - max(u_s, tap)) / span
            weights[j, t] = weight if weight > 1e-7 else 0.0
        first[j] = min(max(int(base), 0), mip_len - 1)
    return i0 - win0, i1 - i0


@njit(cache=True, nogil=True)
def _is_copy(weights, first, n):  # pragma: no cover
    """One tap of weight 1 per pixel over consecutive mip pixels: the item sits on the pixel grid."""
    for j in range(n):
        if weights[j, 0] < 0.9999999 or first[j] != first[0] + j:
            return False
    return True


@njit(cache=True, nogil=True)
def _blend_row(dst, src, alpha, n):  # pragma: no cover
    """dst[:n] = dst + (src - dst) * alpha, rounded. Flat RGB rows and no branches, so LLVM vectorises it;
    src is a convex combination of uint8 values, so the result stays within 0..255."""
    for j in range(n):
        below = np.float32(dst[j])
        dst[j] = np.uint8(below + (src[j] - below) * alpha[j] + np.float32(0.5))


@njit(cache=True, nogil=True)
def _blend_copy(out, ox, oy, nx, ny, cover_x, cover_y, mip, mx, my):  # pragma: no cover
    n = nx * 3
    row_alpha = np.empty(n, np.float32)
    line = np.empty(n, np.float32)
    for r in range(ny):
        dst = out[oy + r].reshape(-1)[ox * 3:ox * 3 + n]
        src = mip[my + r].reshape(-1)[mx * 3:mx * 3 + n]
        if cover_y[r] >= 1.0 and cover_x[0] >= 1.0 and cover_x[nx - 1] >= 1.0:
            dst[:] = src  # the item covers the whole run of this row
            continue
        for c in range(nx):
            row_alpha[c * 3] = row_alpha[c * 3 + 1] = row_alpha[c * 3 + 2] = cover_y[r] * cover_x[c]
        for j in range(n):
            line[j] = src[j]
        _blend_row(dst, line, row_alpha, n)


@njit(cache=True, nogil=True)
def _paste(out, win_x0, win_y0, factor, canvas_w, canvas_h, x, y, w, h, mip, scale):  # pragma: no cover
    """Blend one item (canvas rect x, y, w, h; ``mip`` its mip level for ``factor``/``scale``) into out."""
    height, width = out.shape[0], out.shape[1]
    mh, mw = mip.shape[0], mip.shape[1]
    cover_x = np.empty(width, np.float32)
    first_x = np.empty(width, np.int64)
    weights_x = np.zeros((width, MAX_TAPS), np.float32)
    ox, nx = _axis(x, w, canvas_w, factor, win_x0, width, mw, scale, cover_x, first_x, weights_x)
    if nx == 0:
        return
    cover_y = np.empty(height, np.float32)
    first_y = np.empty(height, np.int64)
    weights_y = np.zeros((height, MAX_TAPS), np.float32)
    oy, ny = _axis(y, h, canvas_h, factor, win_y0, height, mh, scale, cover_y, first_y, weights_y)
    if ny == 0:
        return
    if scale == 1 and _is_copy(weights_x, first_x, nx) and _is_copy(weights_y, first_y, ny):
        _blend_copy(out, ox, oy, nx, ny, cover_x, cover_y, mip, first_x[0], first_y[0])
        return
    taps = scale + 1
    n = nx * 3
    src_x = np.empty((taps, n), np.int64)  # flat source index of every output channel, per tap
    weight_x = np.empty((taps, n), np.float32)
    for t in range(taps):
        for c in range(nx):
            column = min(first_x[c] + t, mw - 1) * 3
            for ch in range(3):
                src_x[t, c * 3 + ch] = column + ch
                weight_x[t, c * 3 + ch] = weights_x[c, t]
    # Consecutive source columns (the usual case): contiguous loads, which LLVM vectorises.
    run = first_x[nx - 1] + taps - 1 <= mw - 1
    for c in range(nx):
        run = run and first_x[c] == first_x[0] + c
    base = first_x[0] * 3
    used = np.zeros(taps, np.bool_)  # taps with any weight: at an even phase the last one has none
    for t in range(taps):
        for c in range(nx):
            used[t] = used[t] or weights_x[c, t] != 0.0
    slots = taps + 1
    rows = np.empty((slots, n), np.float32)  # pass 1 results for the last few source rows (a ring)
    held = np.full(slots, -1, np.int64)
    alpha = np.empty(n, np.float32)
    value = np.empty(n, np.float32)
    for r in range(ny):
        value[:] = 0.0
        for t in range(taps):
            weight = weights_y[r, t]
            if weight == 0.0:
                continue
            source = min(first_y[r] + t, mh - 1)
            slot = source % slots
            acc = rows[slot]
            if held[slot] != source:  # pass 1: resample this source row along x
                held[slot] = source
                line = mip[source].reshape(-1)
                acc[:] = 0.0
                for tx in range(taps):
                    if not used[tx]:
                        continue
                    if run:
                        shifted = line[base + tx * 3:base + tx * 3 + n]
                        for j in range(n):
                            acc[j] += weight_x[tx, j] * np.float32(shifted[j])
                    else:
                        for j in range(n):
                            acc[j] += weight_x[tx, j] * np.float32(line[src_x[tx, j]])
            for j in range(n):  # pass 2: along y
                value[j] += weight * acc[j]
        for c in range(nx):
            alpha[c * 3] = alpha[c * 3 + 1] = alpha[c * 3 + 2] = cover_y[r] * cover_x[c]
        _blend_row(out[oy + r].reshape(-1)[ox * 3:ox * 3 + n], value, alpha, n)


@njit(cache=True, nogil=True)
def _fill(out, red, green, blue):  # pragma: no cover
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[r, c, 0] = red
            out[r, c, 1] = green
            out[r, c, 2] = blue


def mip_plan(x: int, y: int, factor: int) -> tuple[int, int]:
    """(mip level, mip pixels per level pixel) to read an item at (x, y) for a level at ``factor``."""
    k = factor.bit_length() - 1
    if factor == 2 and (x % 2 or y % 2):
        return 0, 2  # exact: a two-pixel box over the item's own pixels
    return k, 1


def render_window(window: Window, canvas_size: tuple[int, int], background: tuple[int, int, int],
                  table: ItemTable, indices: np.ndarray, mip_of: MipLookup) -> np.ndarray:
    """Pixels (height, width, 3) uint8 of a level window: ``indices`` drawn in order over the background.

    ``mip_of(variant, k)`` returns mip level k of a variant's chain (its last level past the end).
    """
    out = np.empty((window.height, window.width, 3), dtype=np.uint8)
    _fill(out, *background)
    f = window.factor
    cw, ch = canvas_size
    xs, ys, ws, hs, vs = (table.x[indices].tolist(), table.y[indices].tolist(), table.w[indices].tolist(),
                          table.h[indices].tolist(), table.variant[indices].tolist())
    for x, y, w, h, v in zip(xs, ys, ws, hs, vs, strict=True):
        level, scale = mip_plan(x, y, f)
        _paste(out, window.x0, window.y0, f, cw, ch, x, y, w, h, mip_of(v, level), scale)
    return out
