"""Validate request paths into typed requests; every fault is a BadRequest, PathTooLong or NotFound.

The one place where URLs are parsed: the HTTP layer only dispatches on the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gigaformat.names import DATASET_PATTERN
from tiler.encode import FORMATS
from tiler.errors import BadRequest, NotFound, PathTooLong

MAX_PATH = 256
_NAME = DATASET_PATTERN
_NUM = r"(0|[1-9][0-9]{0,8})"
_FMT = "(" + "|".join(FORMATS) + ")"
_TILE = re.compile(rf"^(?P<ds>{_NAME})/(?P<z>{_NUM})/(?P<x>{_NUM})/(?P<y>{_NUM})\.(?P<fmt>[A-Za-z0-9]{{1,8}})$")
_INFO = re.compile(rf"^(?P<ds>{_NAME})/info\.json$")
_DZI = re.compile(rf"^(?P<ds>{_NAME})\.dzi$")
_DZ_TILE = re.compile(
    rf"^(?P<ds>{_NAME})_files/(?P<level>{_NUM})/(?P<col>{_NUM})_(?P<row>{_NUM})\.(?P<fmt>[A-Za-z0-9]{{1,8}})$")
_VERSION = re.compile(r"^[0-9]{1,10}$")
_TILE_SHAPED = re.compile(rf"^{_NAME}/[^/]+/[^/]+/[^/]+\.[^/]+$")


@dataclass(frozen=True)
class DatasetsRequest:
    """``/tiles/datasets.json``: the datasets this server (or the proxy behind it) serves."""


@dataclass(frozen=True)
class InfoRequest:
    dataset: str


@dataclass(frozen=True)
class TileRequest:
    dataset: str
    z: int
    x: int
    y: int
    fmt: str
    version: int | None  # the ?v= the client named, None if absent


@dataclass(frozen=True)
class DziRequest:
    dataset: str


@dataclass(frozen=True)
class DeepZoomTileRequest:
    dataset: str
    level: int
    col: int
    row: int
    fmt: str
    version: int | None


def check_path(path: str) -> None:
    """Refuse a path too long to be valid, or one holding '..', '.', '//', a backslash or NUL."""
    if len(path) > MAX_PATH:
        raise PathTooLong(f"path longer than {MAX_PATH} characters")
    if "\\" in path or "\x00" in path or "//" in path or "/../" in f"/{path}/" or "/./" in f"/{path}/":
        raise BadRequest("path may not contain '..', '.', '//' or backslashes")


def _format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BadRequest(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt


def parse_version(query_v: str | None) -> int | None:
    if query_v is None:
        return None
    if not _VERSION.match(query_v):
        raise BadRequest("v must be a whole number (the tile version from info.json)")
    return int(query_v)


TilesRequest = DatasetsRequest | InfoRequest | TileRequest | DziRequest | DeepZoomTileRequest


def parse_tiles_path(path: str, query_v: str | None) -> TilesRequest:
    """``path`` is what follows ``/tiles/``."""
    check_path(path)
    if path == "datasets.json":
        return DatasetsRequest()
    if m := _INFO.match(path):
        return InfoRequest(m["ds"])
    if m := _TILE.match(path):
        return TileRequest(m["ds"], int(m["z"]), int(m["x"]), int(m["y"]), _format(m["fmt"]),
                           parse_version(query_v))
    if m := _DZI.match(path):
        return DziRequest(m["ds"])
    if m := _DZ_TILE.match(path):
        return DeepZoomTileRequest(m["ds"], int(m["level"]), int(m["col"]), int(m["row"]), _format(m["fmt"]),
                                   parse_version(query_v))
    if _TILE_SHAPED.match(path):
        raise BadRequest("z, x and y must be whole numbers without leading zeros (at most 9 digits)")
    raise NotFound("not a tile path: use /tiles/<dataset>/<z>/<x>/<y>.<jpg|png|webp>, "
                   "/tiles/<dataset>/info.json or DeepZoom /tiles/<dataset>.dzi")
