"""Apply a parsed IIIF image request to an image: which canvas pixels, at what size, from which level.

One resampling definition for every answer (``tiler.resample``): an output pixel is the area average of the
1:1 canvas under its box. Along an axis where the request lands on a level's grid (the region starts on it,
ends on it or at the canvas edge, and the size is the region's size at that level, rounded up), output pixel
``i`` is exactly level pixel ``i`` of that window: the pixels ``/tiles/`` serves, at every scale factor of
``info.json`` and every size it lists. Other sizes take boxes of ``region / size`` canvas pixels, averaged
from the level at least twice finer than the box (so the level pixels cut by a box's edge, taken as
uniform, weigh little: >= 41 dB PSNR against the exact area average on the awkward test wall, noise and all).

Outputs are bounded by ``MAX_WIDTH``, ``MAX_HEIGHT`` and ``MAX_AREA`` (published in info.json) and the
level pixels read for one answer by ``MAX_WINDOW`` (a distorted ``w,h`` reads a coarser level instead).
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from gigaformat.levels import Geometry
from tiler.errors import BadRequest
from tiler.iiif_parse import IiifImageRequest, Region, Size
from tiler.resample import AxisTaps, axis_taps, resample, split_taps

MAX_WIDTH = 4096
MAX_HEIGHT = 4096
MAX_AREA = 2048 * 2048
MAX_WINDOW = 4 * MAX_AREA  # level pixels read for one answer


@dataclass(frozen=True)
class Plan:
    """What an image request means for this image: canvas region, output size, and the level read."""

    x: int
    y: int
    width: int
    height: int
    out_width: int
    out_height: int
    z: int
    step_x: float  # canvas pixels per output pixel (a level factor where the axis is on that level's grid)
    step_y: float

    @property
    def canonical(self) -> str:
        """``x,y,w,h/w,h``: the canonical region and size of the request."""
        return f"{self.x},{self.y},{self.width},{self.height}/{self.out_width},{self.out_height}"


def _round(value: float) -> int:
    return int(math.floor(value + 0.5))


def resolve_region(region: Region, width: int, height: int) -> tuple[int, int, int, int]:
    """The canvas rectangle (x, y, w, h) the region names, cropped to the image; BadRequest if it is outside."""
    if region.kind == "full":
        return 0, 0, width, height
    if region.kind == "square":
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side
    if region.kind == "px":
        x, y, w, h = (int(v) for v in region.values)
    else:
        px, py, pw, ph = region.values
        x, y = _round(px * width / 100), _round(py * height / 100)
        w, h = _round(pw * width / 100), _round(ph * height / 100)
    if x >= width or y >= height:
        raise BadRequest(f"region {x},{y},{w},{h} lies outside the {width}x{height} image")
    w, h = min(w, width - x), min(h, height - y)
    if w <= 0 or h <= 0:
        raise BadRequest(f"region of the {width}x{height} image is empty at its pixel scale")
    return x, y, w, h


def _limits_scale(w: int, h: int) -> float:
    return min(1.0, MAX_WIDTH / w, MAX_HEIGHT / h, math.sqrt(MAX_AREA / (w * h)))


def resolve_size(size: Size, rw: int, rh: int) -> tuple[int, int]:
    """The output (width, height) for a region of rw x rh; BadRequest if it would upscale, be empty, or pass
    the published limits."""
    if size.kind == "max":
        scale = _limits_scale(rw, rh)
        return max(1, int(rw * scale)), max(1, int(rh * scale))
    if size.kind == "pct":
        out = _round(rw * size.percent / 100), _round(rh * size.percent / 100)
    elif size.kind == "confined":
        scale = min(size.width / rw, size.height / rh)
        out = _round(rw * scale), _round(rh * scale)
    elif size.width is None:
        out = _round(rw * size.height / rh), size.height
    elif size.height is None:
        out = size.width, _round(rh * size.width / rw)
    else:
        out = size.width, size.height
    if out[0] < 1 or out[1] < 1:
        raise BadRequest(f"size {out[0]}x{out[1]} of a {rw}x{rh} region is empty")
    if out[0] > rw or out[1] > rh:
        raise BadRequest(f"size {out[0]}x{out[1]} is larger than the {rw}x{rh} region: upscaling needs '^', "
                         "which is not offered here")
    if out[0] > MAX_WIDTH or out[1] > MAX_HEIGHT or out[0] * out[1] > MAX_AREA:
        raise BadRequest(f"size {out[0]}x{out[1]} passes the limits (maxWidth {MAX_WIDTH}, maxHeight {MAX_HEIGHT}, "
                         f"maxArea {MAX_AREA}): ask for a smaller size or region")
    return out


def _grid_factor(start: int, length: int, out: int, canvas: int, top: int) -> int | None:
    """The level factor whose grid this axis lands on, if any (see the module's docstring)."""
    for k in range(top + 1):
        f = 1 << k
        end = start + length
        if start % f == 0 and (end % f == 0 or end == canvas) and out == -(-length // f):
            return f
    return None


def plan_request(geometry: Geometry, req: IiifImageRequest) -> Plan:
    """The plan of an image request, or BadRequest saying what does not fit this image."""
    g = geometry
    x, y, w, h = resolve_region(req.region, g.width, g.height)
    ow, oh = resolve_size(req.size, w, h)
    fx, fy = _grid_factor(x, w, ow, g.width, g.top), _grid_factor(y, h, oh, g.height, g.top)
    step_x, step_y = fx or w / ow, fy or h / oh
    if fx is not None and fx == fy:
        factor = fx  # both axes on one level's grid: its pixels, exactly
    else:  # a level twice finer than the boxes: the cut pixels at their edges weigh little (tests/iiif/test_spec.py)
        factor = 1
        while factor < (1 << g.top) and factor * 4 <= min(step_x, step_y) + 1e-9:
            factor *= 2
    while factor < (1 << g.top) and (w / factor + 2) * (h / factor + 2) > MAX_WINDOW:
        factor *= 2
    return Plan(x, y, w, h, ow, oh, g.top - int(math.log2(factor)), step_x, step_y)


SPLIT_ROWS = 256  # outputs at least twice this tall are rendered in two halves at once when a helper is given


def render_plan(plan: Plan, geometry: Geometry, render_level_window, helper: Executor | None = None,
                by_tile: bool = False) -> np.ndarray:
    """The (out_height, out_width, 3) uint8 pixels of a plan; ``render_level_window(z, x0, y0, w, h)`` draws
    any window of a level (``LoadedDataset.render_level_window``, whose pixels do not depend on the window).
    With ``helper``, the same pixels sooner: where the level's windows are pasted from tiles decoded apart
    (``by_tile``), half of the tiles are decoded there (``render_level_window(..., helper=helper)``; halves of
    the output would each decode the tiles their border cuts); otherwise a tall output's lower half is
    rendered there meanwhile."""
    factor = geometry.factor(plan.z)
    tx = axis_taps(plan.x, plan.width, plan.out_width, plan.step_x, factor, geometry.width)
    ty = axis_taps(plan.y, plan.height, plan.out_height, plan.step_y, factor, geometry.height)
    tiles_helper = helper if by_tile else None

    def rows(ty: AxisTaps) -> np.ndarray:
        return resample(lambda r0, n: render_level_window(plan.z, tx.origin, ty.origin + r0, tx.length, n,
                                                          helper=tiles_helper), tx, ty)

    if helper is None or by_tile or plan.out_height < 2 * SPLIT_ROWS:
        return rows(ty)
    head, tail = split_taps(ty, plan.out_height // 2)
    lower = helper.submit(rows, tail)
    try:
        upper = rows(head)
    finally:
        below = lower.result()
    return np.concatenate([upper, below])


def finish(pixels: np.ndarray, mirror: bool, rotation: int, quality: str) -> np.ndarray:
    """Mirror, then rotate clockwise, then apply the quality: (h, w, 3) for default/color, (h, w) for
    gray/bitonal."""
    if mirror:
        pixels = pixels[:, ::-1]
    if rotation:
        pixels = np.rot90(pixels, k=-(rotation // 90))
    pixels = np.ascontiguousarray(pixels)
    if quality in ("gray", "bitonal"):
        gray = Image.fromarray(pixels).convert("L")
        if quality == "bitonal":
            gray = gray.point(lambda v: 255 if v >= 128 else 0)
        return np.asarray(gray)
    return pixels
