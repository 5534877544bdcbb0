"""Area-average resampling of a level window onto an output grid (separable; the inner loops compiled by numba).

The one resampling definition of the server: an output pixel is the mean of the 1:1 canvas pixels under
its box. A level pixel at factor ``f`` already is the mean of the ``f`` x ``f`` canvas pixels under it (the
last row and column: of the canvas pixels that exist there), so an output box that is a union of whole
level pixels is their mean weighted by the canvas area each one covers: exact. A box edge that cuts a level
pixel takes the cut part as uniform (the same approximation the render core makes for off-grid items).

Along each axis every output pixel has a first level pixel and ``taps`` weights (summing to 1); the 2-D
weights are their products, applied down the level rows first, then along them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiler.jit import njit


@dataclass(frozen=True)
class AxisTaps:
    """One axis of a resampling: output pixel ``i`` is ``sum_t weights[i, t] * level[origin + first[i] + t]``."""

    origin: int           # the first level pixel any output pixel reads
    length: int           # how many level pixels from ``origin`` are read
    first: np.ndarray     # (out,) int64, relative to origin
    weights: np.ndarray   # (out, taps) float32, each row summing to 1

    @property
    def is_identity(self) -> bool:
        """True when output pixel i is level pixel origin + i (a copy)."""
        return self.weights.shape[1] == 1 and self.length == len(self.first)


def split_taps(taps: AxisTaps, at: int) -> tuple[AxisTaps, AxisTaps]:
    """Output pixels ``[0, at)`` and ``[at, out)`` of an axis as two axes of their own (each reading only the
    level pixels it needs): resampled apart and put side by side, they are the whole axis, pixel for pixel."""
    n = taps.weights.shape[1]
    head = AxisTaps(taps.origin, min(taps.length, int(taps.first[at - 1]) + n), taps.first[:at], taps.weights[:at])
    skip = int(taps.first[at])
    tail = AxisTaps(taps.origin + skip, taps.length - skip, taps.first[at:] - skip, taps.weights[at:])
    return head, tail


def axis_taps(start: int, length: int, out: int, step: float, factor: int, canvas: int) -> AxisTaps:
    """Taps of ``out`` output pixels over canvas ``[start, start + length)``, pixel ``i`` covering
    ``[start + i * step, min(start + (i + 1) * step, start + length))``, read from the level at ``factor``
    (level pixel ``j`` covers canvas ``[j * factor, min((j + 1) * factor, canvas))``)."""
    end = start + length
    i = np.arange(out, dtype=np.float64)
    a = start + i * step
    b = np.minimum(start + (i + 1) * step, end)
    b[-1] = end  # the last box reaches the region's edge exactly, whatever the float step says
    ja = np.floor(a / factor).astype(np.int64)
    jb = np.ceil(b / factor).astype(np.int64)
    taps = int((jb - ja).max())
    weights = np.zeros((out, taps), dtype=np.float64)
    for t in range(taps):
        j = ja + t
        lo = np.maximum(a, j * factor)
        hi = np.minimum(np.minimum(b, (j + 1) * factor), canvas)
        weights[:, t] = np.maximum(hi - lo, 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    origin = int(ja[0])
    return AxisTaps(origin, int(jb.max()) - origin, ja - origin, weights.astype(np.float32))


@njit(cache=True, nogil=True)
def _resample(src, src_row0, first_x, weights_x, first_y, weights_y, out, row0, row1):  # pragma: no cover
    """Output rows ``row0..row1`` from ``src``, whose row 0 is level row ``src_row0`` (relative to origin)."""
    ow = out.shape[1]
    taps_x = weights_x.shape[1]
    taps_y = weights_y.shape[1]
    lo = first_y[row0] - src_row0
    hi = first_y[row1 - 1] + taps_y - src_row0
    hi = min(hi, src.shape[0])
    rows = np.zeros((hi - lo, ow, 3), dtype=np.float32)
    for r in range(lo, hi):
        line = src[r]
        acc = rows[r - lo]
        for o in range(ow):
            j0 = first_x[o]
            red = 0.0
            green = 0.0
            blue = 0.0
            for t in range(taps_x):
                w = weights_x[o, t]
                if w != 0.0:
                    px = line[j0 + t]
                    red += w * px[0]
                    green += w * px[1]
                    blue += w * px[2]
            acc[o, 0] = red
            acc[o, 1] = green
            acc[o, 2] = blue
    for i in range(row0, row1):
        base = first_y[i] - src_row0 - lo
        for o in range(ow):
            red = 0.0
            green = 0.0
            blue = 0.0
            for t in range(taps_y):
                w = weights_y[i, t]
                if w != 0.0:
                    red += w * rows[base + t, o, 0]
                    green += w * rows[base + t, o, 1]
                    blue += w * rows[base + t, o, 2]
            out[i, o, 0] = min(255, int(red + 0.5))
            out[i, o, 1] = min(255, int(green + 0.5))
            out[i, o, 2] = min(255, int(blue + 0.5))


STRIP_PIXELS = 1 << 22  # level pixels rendered at once (12 MB): memory per request stays bounded


def resample(render_rows, x: AxisTaps, y: AxisTaps) -> np.ndarray:
    """The (out_h, out_w, 3) uint8 image; ``render_rows(r0, n)`` gives level rows ``origin + r0 ..`` of the
    window (``x.length`` wide), called for strips of at most about ``STRIP_PIXELS``."""
    out_h, out_w = len(y.first), len(x.first)
    if x.is_identity and y.is_identity:
        return render_rows(0, y.length)
    out = np.empty((out_h, out_w, 3), dtype=np.uint8)
    taps_y = y.weights.shape[1]
    rows_per_strip = max(1, STRIP_PIXELS // max(1, x.length))
    row = 0
    while row < out_h:
        end = row + 1
        while end < out_h and y.first[end] + taps_y - y.first[row] <= rows_per_strip:
            end += 1
        lo = int(y.first[row])
        hi = min(int(y.first[end - 1]) + taps_y, y.length)
        strip = np.ascontiguousarray(render_rows(lo, hi - lo))
        _resample(strip, lo, x.first, x.weights, y.first, y.weights, out, row, end)
        row = end
    return out
