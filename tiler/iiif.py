"""IIIF Image API 3.0: parse ``{region}/{size}/{rotation}/{quality}.{format}`` and plan its pixels.

Supported: regions full, square, x,y,w,h and pct:; sizes max, w,, ,h, w,h, !w,h and pct:n (no
upscaling); rotations 0/90/180/270 with optional mirror; qualities default, color, gray, bitonal;
formats jpg, png, webp. Outputs are bounded (MAX_SIDE per side) so one request cannot eat the node.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from gigaformat.names import is_dataset_name
from tiler.dataset import LoadedDataset
from tiler.encode import FORMATS
from tiler.errors import BadRequest, NotFound, PathTooLong
from tiler.tile_request import MAX_PATH, InfoRequest

MAX_SIDE = 2048
_INT = r"(0|[1-9][0-9]{0,8})"
_REGION = re.compile(rf"^{_INT},{_INT},{_INT},{_INT}$")
_PCT_REGION = re.compile(r"^pct:([0-9]{1,3}(?:\.[0-9]{1,6})?),([0-9.]{1,10}),([0-9.]{1,10}),([0-9.]{1,10})$")
_SIZE = re.compile(rf"^(!)?{_INT}?,{_INT}?$")
_PCT_SIZE = re.compile(r"^pct:([0-9]{1,3}(?:\.[0-9]{1,6})?)$")
_ROTATION = re.compile(r"^(!)?(0|90|180|270)$")
QUALITIES = ("default", "color", "gray", "bitonal")


@dataclass(frozen=True)
class IiifImageRequest:
    dataset: str
    region: str
    size: str
    rotation: str
    quality: str
    fmt: str


def parse_iiif_path(path: str) -> InfoRequest | IiifImageRequest:
    """``path`` is what follows ``/iiif/3/``."""
    if len(path) > MAX_PATH:
        raise PathTooLong(f"path longer than {MAX_PATH} characters")
    parts = path.split("/")
    if not is_dataset_name(parts[0]):
        raise NotFound(f"unknown IIIF identifier {parts[0][:64]!r}")
    if len(parts) == 2 and parts[1] == "info.json":
        return InfoRequest(parts[0])
    if len(parts) != 5 or "." not in parts[4]:
        raise BadRequest("IIIF image requests are /iiif/3/<id>/{region}/{size}/{rotation}/{quality}.{format}")
    quality, fmt = parts[4].rsplit(".", 1)
    if quality not in QUALITIES:
        raise BadRequest(f"quality {quality[:32]!r} is not one of {', '.join(QUALITIES)}")
    if fmt not in FORMATS:
        raise BadRequest(f"format {fmt[:16]!r} is not one of {', '.join(FORMATS)}")
    return IiifImageRequest(parts[0], parts[1], parts[2], parts[3], quality, fmt)


def info_document(ds: LoadedDataset, base_url: str) -> dict:
    g = ds.geometry
    return {
        "@context": "http://iiif.io/api/image/3/context.json", "id": f"{base_url}/iiif/3/{ds.name}",
        "type": "ImageService3", "protocol": "http://iiif.io/api/image", "profile": "level1",
        "width": g.width, "height": g.height, "maxWidth": MAX_SIDE, "maxHeight": MAX_SIDE,
        "tiles": [{"width": g.tile_size, "height": g.tile_size, "scaleFactors": [1 << k for k in range(g.top + 1)]}],
        "sizes": [{"width": w, "height": h} for w, h in (g.level_size(z) for z in range(g.top + 1))
                  if max(w, h) <= MAX_SIDE],
        "extraFormats": ["png", "webp"], "extraQualities": ["gray", "bitonal"],
        "extraFeatures": ["mirroring", "rotationBy90s", "regionByPct", "sizeByPct", "sizeByConfinedWh",
                          "sizeByWh", "regionSquare"],
    }


def _region(text: str, width: int, height: int) -> tuple[int, int, int, int]:
    if text == "full":
        return 0, 0, width, height
    if text == "square":
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side
    if m := _REGION.match(text):
        x, y, w, h = (int(v) for v in m.groups())
    elif m := _PCT_REGION.match(text):
        try:
            px, py, pw, ph = (float(v) for v in m.groups())
        except ValueError:
            raise BadRequest(f"region {text[:64]!r} has a malformed percentage") from None
        x, y = round(px * width / 100), round(py * height / 100)
        w, h = round(pw * width / 100), round(ph * height / 100)
    else:
        raise BadRequest(f"region {text[:64]!r}: use full, square, x,y,w,h or pct:x,y,w,h")
    if w <= 0 or h <= 0 or x >= width or y >= height:
        raise BadRequest(f"region {text[:64]!r} is empty or outside the {width}x{height} image")
    return x, y, min(w, width - x), min(h, height - y)


def _size(text: str, rw: int, rh: int) -> tuple[int, int]:
    if text == "max":
        scale = min(1.0, MAX_SIDE / max(rw, rh))
        return max(1, round(rw * scale)), max(1, round(rh * scale))
    if m := _PCT_SIZE.match(text):
        pct = float(m[1])
        out = max(1, round(rw * pct / 100)), max(1, round(rh * pct / 100))
    elif m := _SIZE.match(text):
        confined, w, h = m[1] == "!", m[2], m[3]
        if w is None and h is None:
            raise BadRequest("size needs a width, a height or both")
        if confined:
            if w is None or h is None:
                raise BadRequest("!w,h needs both a width and a height")
            scale = min(int(w) / rw, int(h) / rh)
            out = max(1, round(rw * scale)), max(1, round(rh * scale))
        elif w is None:
            out = max(1, round(rw * int(h) / rh)), int(h)
        elif h is None:
            out = int(w), max(1, round(rh * int(w) / rw))
        else:
            out = int(w), int(h)
    else:
        raise BadRequest(f"size {text[:64]!r}: use max, w,, ,h, w,h, !w,h or pct:n ('^' upscaling is off)")
    if out[0] <= 0 or out[1] <= 0 or out[0] > rw or out[1] > rh:
        raise BadRequest(f"size {text[:64]!r} would upscale or be empty (region is {rw}x{rh})")
    if max(out) > MAX_SIDE:
        raise BadRequest(f"size {text[:64]!r} exceeds {MAX_SIDE} pixels on a side")
    return out


def plan_and_render(ds: LoadedDataset, req: IiifImageRequest) -> np.ndarray:
    """Pixels of an IIIF image request, (h, w, 3) or (h, w) uint8 for gray/bitonal."""
    g = ds.geometry
    rx, ry, rw, rh = _region(req.region, g.width, g.height)
    ow, oh = _size(req.size, rw, rh)
    rotation = _ROTATION.match(req.rotation)
    if rotation is None:
        raise BadRequest(f"rotation {req.rotation[:16]!r}: use 0, 90, 180 or 270, '!' to mirror")
    k = min(g.top, max(0, int(math.floor(math.log2(min(rw / ow, rh / oh)) + 1e-9))))
    z, f = g.top - k, 1 << k
    lx0, ly0 = rx // f, ry // f
    lx1, ly1 = -(-(rx + rw) // f), -(-(ry + rh) // f)
    pixels = ds.render_level_window(z, lx0, ly0, lx1 - lx0, ly1 - ly0)
    image = Image.fromarray(pixels)
    if image.size != (ow, oh):
        image = image.resize((ow, oh), Image.Resampling.BOX)
    if rotation[1] == "!":
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    turns = {"0": None, "90": Image.Transpose.ROTATE_270, "180": Image.Transpose.ROTATE_180,
             "270": Image.Transpose.ROTATE_90}[rotation[2]]
    if turns is not None:
        image = image.transpose(turns)
    if req.quality == "gray":
        image = image.convert("L")
    elif req.quality == "bitonal":
        image = image.convert("L").point(lambda v: 255 if v >= 128 else 0)
    return np.asarray(image)
