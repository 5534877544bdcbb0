"""DeepZoom numbering of the same pixels: level ``L`` of ``0..max_level`` where ``max_level`` is 1:1.

DeepZoom halves down to a 1×1 image, so its levels below our level 0 are level 0 halved again; at and
above it, DeepZoom level ``L`` is our level ``top - (max_level - L)``, tiles cropped to the level's edge.
"""

from __future__ import annotations

from dataclasses import dataclass

from gigaformat.levels import Geometry

DZI_NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"


def max_level(width: int, height: int) -> int:
    """DeepZoom's top (1:1) level: ``ceil(log2(max(width, height)))``."""
    return max(0, (max(width, height) - 1).bit_length())


@dataclass(frozen=True)
class DeepZoomTile:
    """Where DeepZoom tile (level, col, row) comes from: our tile (z, col, row) cropped to ``crop`` (w, h),
    or, for ``z < 0``, the whole of our level 0 halved ``-z`` more times (``crop`` is then None)."""

    z: int
    col: int
    row: int
    crop: tuple[int, int] | None


def locate(geometry: Geometry, level: int, col: int, row: int) -> DeepZoomTile | None:
    """Our pixels behind DeepZoom tile (level, col, row); None if the pyramid has no such tile."""
    top = max_level(geometry.width, geometry.height)
    if not 0 <= level <= top:
        return None
    z = geometry.top - (top - level)
    if z < 0:
        return DeepZoomTile(z, 0, 0, None) if (col, row) == (0, 0) else None
    width, height = geometry.level_size(z)
    size = geometry.tile_size
    crop = (min(size, width - col * size), min(size, height - row * size))
    if col < 0 or row < 0 or crop[0] <= 0 or crop[1] <= 0:
        return None
    return DeepZoomTile(z, col, row, crop)


def dzi_document(width: int, height: int, fmt: str = "jpg", tile_size: int = 256) -> str:
    """The ``.dzi`` XML of a ``width`` x ``height`` image with tiles of ``tile_size`` in ``fmt``, no overlap."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Image xmlns="{DZI_NAMESPACE}" TileSize="{tile_size}" Overlap="0" Format="{fmt}">'
            f'<Size Width="{width}" Height="{height}"/></Image>\n')
