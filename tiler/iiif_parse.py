"""IIIF Image API 3.0 URLs: ``{id}/info.json`` and ``{id}/{region}/{size}/{rotation}/{quality}.{format}``.

Syntax only (``tiler.iiif_plan`` applies the parameters to an image). The faults follow the spec's status
codes: a path that cannot name one of our identifiers is NotFound (404; identifiers hold no '/', so an
escaped or bare slash in one is an unknown identifier), a malformed parameter is BadRequest (400), a valid
request for a feature this server does not implement (upscaling with '^', rotations other than multiples
of 90, formats tif/gif/jp2/pdf) is NotImplemented (501).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gigaformat.names import is_dataset_name
from tiler.encode import FORMATS
from tiler.errors import BadRequest, NotFound, NotImplementedFeature, PathTooLong
from tiler.tile_request import MAX_PATH

QUALITIES = ("default", "color", "gray", "bitonal")
IIIF_FORMATS = ("jpg", "tif", "png", "gif", "jp2", "pdf", "webp")  # every format the spec names
_INT = r"[0-9]{1,10}"
_FLOAT = r"(?:[0-9]{1,10}(?:\.[0-9]{0,10})?|\.[0-9]{1,10})"
_PX_REGION = re.compile(rf"^({_INT}),({_INT}),({_INT}),({_INT})$")
_PCT_REGION = re.compile(rf"^pct:({_FLOAT}),({_FLOAT}),({_FLOAT}),({_FLOAT})$")
_SIZE = re.compile(rf"^(\^)?(!)?({_INT})?,({_INT})?$")
_PCT_SIZE = re.compile(rf"^(\^)?pct:({_FLOAT})$")
_ROTATION = re.compile(rf"^(!)?({_FLOAT})$")


@dataclass(frozen=True)
class Region:
    """``full``, ``square``, pixels (``x,y,w,h``) or percentages (``pct:x,y,w,h``)."""

    kind: str  # full | square | px | pct
    values: tuple[float, float, float, float] = (0, 0, 0, 0)


@dataclass(frozen=True)
class Size:
    """``max``, ``w,``, ``,h``, ``w,h``, ``!w,h`` or ``pct:n`` (None where a number is left out)."""

    kind: str  # max | wh | confined | pct
    width: int | None = None
    height: int | None = None
    percent: float = 0.0


@dataclass(frozen=True)
class IiifInfoRequest:
    dataset: str


@dataclass(frozen=True)
class IiifManifestRequest:
    """``/iiif/3/<id>/manifest.json``: the Presentation 3.0 manifest of the dataset."""

    dataset: str


@dataclass(frozen=True)
class IiifAnnotationsRequest:
    """``/iiif/3/<id>/annotations.json`` (the collection of the items' annotation pages: ``page`` None) or
    ``/iiif/3/<id>/annotations/<page>.json``."""

    dataset: str
    page: int | None


@dataclass(frozen=True)
class IiifBaseRequest:
    """The image's base URI (``/iiif/3/<id>``): answered by a redirect to its info.json."""

    dataset: str


@dataclass(frozen=True)
class IiifImageRequest:
    dataset: str
    region: Region
    size: Size
    mirror: bool
    rotation: int  # 0, 90, 180 or 270 degrees clockwise
    quality: str
    fmt: str


IiifRequest = IiifInfoRequest | IiifManifestRequest | IiifAnnotationsRequest | IiifBaseRequest | IiifImageRequest
_PAGE = re.compile(r"^(0|[1-9][0-9]{0,6})\.json$")


def parse_iiif_path(path: str) -> IiifRequest:
    """``path`` is what follows ``/iiif/3/`` (percent-escapes already decoded)."""
    if len(path) > MAX_PATH:
        raise PathTooLong(f"path longer than {MAX_PATH} characters")
    parts = path.split("/")
    if len(parts) == 3 and is_dataset_name(parts[0]) and parts[1] == "annotations":
        if not (m := _PAGE.match(parts[2])):
            raise NotFound(f"no annotation page {parts[2][:32]!r}: pages are 0.json, 1.json, ...")
        return IiifAnnotationsRequest(parts[0], int(m[1]))
    if not is_dataset_name(parts[0]) or len(parts) not in (1, 2, 5):
        shown = "/".join(parts[:-4]) if len(parts) > 5 else parts[0]
        raise NotFound(f"unknown IIIF identifier {shown[:64]!r}")
    if len(parts) == 1:
        return IiifBaseRequest(parts[0])
    if len(parts) == 2:
        if parts[1] == "info.json":
            return IiifInfoRequest(parts[0])
        if parts[1] == "manifest.json":
            return IiifManifestRequest(parts[0])
        if parts[1] == "annotations.json":
            return IiifAnnotationsRequest(parts[0], None)
        raise NotFound(f"no {parts[1][:32]!r} under /iiif/3/{parts[0]}/: use info.json, manifest.json, "
                       "annotations.json or {region}/{size}/{rotation}/{quality}.{format}")
    _, region, size, rotation, last = parts
    quality, dot, fmt = last.rpartition(".")
    if not dot:
        raise BadRequest("the last segment is {quality}.{format}, e.g. default.jpg")
    mirror, degrees = parse_rotation(rotation)
    return IiifImageRequest(parts[0], parse_region(region), parse_size(size), mirror, degrees,
                            parse_quality(quality), parse_format(fmt))


def parse_region(text: str) -> Region:
    if text in ("full", "square"):
        return Region(text)
    if m := _PX_REGION.match(text):
        region = Region("px", tuple(float(v) for v in m.groups()))
    elif m := _PCT_REGION.match(text):
        region = Region("pct", tuple(float(v) for v in m.groups()))
    else:
        raise BadRequest(f"region {text[:64]!r}: use full, square, x,y,w,h or pct:x,y,w,h")
    if region.values[2] <= 0 or region.values[3] <= 0:
        raise BadRequest(f"region {text[:64]!r} has a zero width or height")
    return region


def parse_size(text: str) -> Size:
    if text in ("max", "^max"):
        size = Size("max")
    elif m := _PCT_SIZE.match(text):
        percent = float(m[2])
        if percent <= 0:
            raise BadRequest(f"size {text[:64]!r}: the percentage must be above 0")
        if percent > 100 and not m[1]:
            raise BadRequest(f"size {text[:64]!r}: above 100% is upscaling, which needs '^' (not offered here)")
        size = Size("pct", percent=percent)
    elif m := _SIZE.match(text):
        confined, width, height = m[2] == "!", m[3], m[4]
        if width is None and height is None:
            raise BadRequest(f"size {text[:64]!r} needs a width, a height or both")
        if confined and (width is None or height is None):
            raise BadRequest(f"size {text[:64]!r}: !w,h needs both a width and a height")
        size = Size("confined" if confined else "wh", None if width is None else int(width),
                    None if height is None else int(height))
        if size.width == 0 or size.height == 0:
            raise BadRequest(f"size {text[:64]!r} has a zero width or height")
    elif text == "full":
        raise BadRequest("size 'full' was replaced by 'max' in IIIF Image API 3.0")
    else:
        raise BadRequest(f"size {text[:64]!r}: use max, w,, ,h, w,h, !w,h or pct:n")
    if text.startswith("^"):
        raise NotImplementedFeature(f"size {text[:64]!r}: upscaling ('^', sizeUpscaling) is not offered here")
    return size


def parse_rotation(text: str) -> tuple[bool, int]:
    m = _ROTATION.match(text)
    if m is None:
        raise BadRequest(f"rotation {text[:16]!r}: use degrees 0-360 clockwise, '!' first to mirror")
    degrees = float(m[2])
    if degrees > 360:
        raise BadRequest(f"rotation {text[:16]!r}: degrees go from 0 to 360")
    if degrees % 90:
        raise NotImplementedFeature(f"rotation {text[:16]!r}: only multiples of 90 degrees are offered here")
    return m[1] == "!", int(degrees) % 360


def parse_quality(text: str) -> str:
    if text not in QUALITIES:
        raise BadRequest(f"quality {text[:32]!r} is not one of {', '.join(QUALITIES)}")
    return text


def parse_format(text: str) -> str:
    if text in FORMATS:
        return text
    if text in IIIF_FORMATS:
        raise NotImplementedFeature(f"format {text!r} is not offered here; use one of {', '.join(FORMATS)}")
    raise BadRequest(f"format {text[:16]!r} is not one of {', '.join(FORMATS)}")
