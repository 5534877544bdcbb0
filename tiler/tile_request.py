"""Validate request paths into typed requests; every fault is a BadRequest, PathTooLong or NotFound.

The one place where URLs are parsed: the HTTP layer only dispatches on the result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from gigaformat.canvas import MAX_SIDE
from gigaformat.names import DATASET_PATTERN, ITEM_ID_RULE, is_item_id
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


@dataclass(frozen=True)
class ItemAtRequest:
    """``/tiles/<ds>/items/at?x=&y=``: the topmost item drawn at canvas pixel (x, y)."""

    dataset: str
    x: int
    y: int
    version: int | None


@dataclass(frozen=True)
class ItemRequest:
    """``/tiles/<ds>/items/<id>``: one item."""

    dataset: str
    item_id: str
    version: int | None


@dataclass(frozen=True)
class ItemsInRequest:
    """``/tiles/<ds>/items?bbox=x,y,w,h&limit=N``: the items drawn in a canvas rectangle, in drawing order."""

    dataset: str
    bbox: tuple[int, int, int, int]
    limit: int
    version: int | None


@dataclass(frozen=True)
class SearchRequest:
    """``/tiles/<ds>/search?q=&limit=&offset=&<column>=<value>``: ranked full-text search with filters."""

    dataset: str
    query: str
    filters: tuple[tuple[str, str], ...]
    limit: int
    offset: int
    version: int | None


MAX_BBOX_PIXELS = 1 << 28  # a rectangle of the canvas the items of which one request may list
MAX_LIMIT = 1000
MAX_OFFSET = 10_000
MAX_QUERY = 200
MAX_FILTERS = 8
_ITEMS = re.compile(rf"^(?P<ds>{_NAME})/(?P<what>items|search)(?:/(?P<rest>[^/]+))?$")
_COORD = re.compile(r"^-?[0-9]{1,9}$")
_COLUMN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

TilesRequest = (DatasetsRequest | InfoRequest | TileRequest | DziRequest | DeepZoomTileRequest | ItemAtRequest
                | ItemRequest | ItemsInRequest | SearchRequest)


def _whole(query: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        if default is None:
            raise BadRequest(f"{name} is required (a whole number)")
        return default
    if not _COORD.match(text) or not low <= int(text) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, got {text[:20]!r}")
    return int(text)


def parse_items(ds: str, what: str, rest: str | None, query: Mapping[str, str]) -> TilesRequest:
    """The items and search requests of dataset ``ds``; BadRequest (400) for any malformed parameter."""
    version = parse_version(query.get("v"))
    if what == "search":
        if rest is not None:
            raise NotFound("search is /tiles/<dataset>/search?q=<words>")
        text = query.get("q", "")
        if len(text) > MAX_QUERY:
            raise BadRequest(f"q is longer than {MAX_QUERY} characters")
        filters = tuple(sorted((k, v) for k, v in query.items() if k not in ("q", "v", "limit", "offset")))
        for name, value in filters:
            if not _COLUMN.match(name) or len(value) > MAX_QUERY:
                raise BadRequest(f"filter {name[:32]!r}: a metadata column name (a-z, 0-9, _) and a value of at "
                                 f"most {MAX_QUERY} characters")
        if len(filters) > MAX_FILTERS:
            raise BadRequest(f"at most {MAX_FILTERS} filters")
        return SearchRequest(ds, text, filters, _whole(query, "limit", 20, 1, MAX_LIMIT),
                             _whole(query, "offset", 0, 0, MAX_OFFSET), version)
    if rest == "at":
        return ItemAtRequest(ds, _whole(query, "x", None, -MAX_SIDE, MAX_SIDE),
                             _whole(query, "y", None, -MAX_SIDE, MAX_SIDE), version)
    if rest is not None:
        if not is_item_id(rest):
            raise BadRequest(f"item id {rest[:64]!r} must be {ITEM_ID_RULE}")
        return ItemRequest(ds, rest, version)
    bbox = query.get("bbox", "")
    parts = bbox.split(",")
    if len(parts) != 4 or not all(_COORD.match(p) for p in parts):
        raise BadRequest("bbox must be x,y,w,h: whole canvas pixels")
    x, y, w, h = (int(p) for p in parts)
    if w <= 0 or h <= 0 or w * h > MAX_BBOX_PIXELS:
        raise BadRequest(f"bbox must have w, h > 0 and at most {MAX_BBOX_PIXELS:,} pixels")
    return ItemsInRequest(ds, (x, y, w, h), _whole(query, "limit", 100, 1, MAX_LIMIT), version)


def parse_tiles_path(path: str, query: Mapping[str, str]) -> TilesRequest:
    """``path`` is what follows ``/tiles/``; ``query`` its query parameters."""
    check_path(path)
    query_v = query.get("v")
    if m := _ITEMS.match(path):
        return parse_items(m["ds"], m["what"], m["rest"], query)
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
                   "/tiles/<dataset>/info.json, /tiles/<dataset>/items, /tiles/<dataset>/search or DeepZoom "
                   "/tiles/<dataset>.dzi")
