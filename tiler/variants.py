"""Decode a source image scaled to its item's rectangle, as an RGB mip chain (pixels only, no S3)."""

from __future__ import annotations

import numpy as np
import pyvips
import simplejpeg

from tiler.errors import InvalidSource
from tiler.mips import mip_chain


def variant_id(image_sha256: str, width: int, height: int) -> str:
    """One image at one size: the unit whose mip chain is stored once however many items show it."""
    return f"{image_sha256[:32]}-{width}x{height}"


def load_scaled(path: str, width: int, height: int, background: tuple[int, int, int], where: str = "") -> np.ndarray:
    """The image scaled to exactly width x height, sRGB, alpha flattened on ``background``: (h, w, 3) uint8.

    A truncated or corrupt image is refused (InvalidSource, prefixed by ``where``: the items.csv row), never
    decoded as far as it goes.
    """
    exact = _plain_jpeg_of_size(path, width, height)
    if exact is not None:
        return exact
    try:
        image = pyvips.Image.thumbnail(path, width, height=height, size="force", fail_on="truncated")
        if image.interpretation not in ("srgb", "b-w") or image.format != "uchar":
            image = image.colourspace("srgb").cast("uchar")
        if image.hasalpha():
            image = image.flatten(background=list(background))
        if image.bands == 1:
            image = image.bandjoin([image, image])
        elif image.bands > 3:
            image = image.extract_band(0, n=3)
        if image.width != width or image.height != height:  # thumbnail rounds; force the exact size
            image = image.resize(width / image.width, vscale=height / image.height)
        pixels = np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(height, width, 3))
    except pyvips.Error as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        reason = "; ".join(lines[:2]) if lines else "decode failed"
        raise InvalidSource(f"{where or path}: image {path} cannot be decoded whole ({reason})") from None
    return pixels


def build_chain(path: str, width: int, height: int, background: tuple[int, int, int], where: str = ""
                ) -> list[np.ndarray]:
    return mip_chain(load_scaled(path, width, height, background, where))


def _plain_jpeg_of_size(path: str, width: int, height: int) -> np.ndarray | None:
    """A JPEG already of the item's size, in YCbCr or gray and with no colour profile to apply, decoded by
    libjpeg-turbo directly (a third of libvips' time, the same pixels); None for anything else."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        if not simplejpeg.is_jpeg(data):
            return None
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if (w, h) != (width, height) or colorspace not in ("YCbCr", "Gray") or b"ICC_PROFILE" in data[:65536]:
            return None
        return simplejpeg.decode_jpeg(data, "RGB")
    except (OSError, ValueError):
        return None
