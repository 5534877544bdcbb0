"""The tile index: where each stored tile of a generation lies (pack, offset, length) and its hash.

Levels ``0..overview_level`` of a generation are stored as encoded tiles (``TileCodec``, JPEG by default);
the index has one 32-byte entry per tile of those levels, level by level, row-major:

```
header   b"GTIX" | version u32 | levels u32 | per level: cols u32, rows u32
entry    pack u32 (into the state's ``tile_packs``) | length u32 | offset u64 | sha256[:16] of the bytes
```
A length of 0 means "no tile stored here". A snapshot ships the whole index as one object
(``snap-<g>/tiles.idx``); a diff lists only the tiles it sets (``tiles_set`` of its changes document), and a
reader merges them (``apply_tiles``). The 16-byte hash lets a reader verify one tile fetched alone.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gigaformat.errors import MalformedDocument
from gigaformat.levels import Geometry

MAGIC = b"GTIX"
VERSION = 1
INDEX_NAME = "tiles.idx"
_HEAD = struct.Struct("<4sII")
_LEVEL = struct.Struct("<II")
ENTRY = struct.Struct("<IIQ16s")
DIGEST_BYTES = 16


def tile_digest(data: bytes | memoryview) -> bytes:
    """The hash an index keeps of a tile's bytes: the first 16 bytes of its sha256."""
    return hashlib.sha256(data).digest()[:DIGEST_BYTES]


@dataclass(frozen=True)
class TileCodec:
    """How stored tiles are encoded: ``format`` (jpg), at ``quality``, chroma ``subsampling`` (0 = 4:4:4,
    2 = 4:2:0, as Pillow and libjpeg name them)."""

    format: str = "jpg"
    quality: int = 85
    subsampling: int = 2

    def to_json(self) -> dict:
        return {"format": self.format, "quality": self.quality, "subsampling": self.subsampling}

    @classmethod
    def from_json(cls, doc: dict) -> TileCodec:
        codec = cls(str(doc["format"]), int(doc["quality"]), int(doc["subsampling"]))
        if codec.format != "jpg" or not 1 <= codec.quality <= 100 or codec.subsampling not in (0, 1, 2):
            raise MalformedDocument(f"tile codec {doc!r} is not one gigatile writes")
        return codec


@dataclass(frozen=True)
class TileEntry:
    pack: int  # position in the state's tile_packs
    offset: int
    length: int
    digest: bytes  # sha256[:16] of the tile's bytes


def tile_name(z: int, x: int, y: int) -> str:
    return f"{z}/{x}/{y}"


def parse_tile_name(name: str) -> tuple[int, int, int]:
    try:
        z, x, y = (int(part) for part in name.split("/"))
    except ValueError:
        raise MalformedDocument(f"tile name {name!r} is not z/x/y") from None
    return z, x, y


class TileIndex:
    """The index of levels ``0..levels-1`` of a canvas; entries are read and set in place."""

    def __init__(self, counts: list[tuple[int, int]], data: bytearray | None = None):
        self.counts = list(counts)
        self.starts: list[int] = []
        total = 0
        for cols, rows in self.counts:
            self.starts.append(total)
            total += cols * rows
        self.size = total
        if data is None:
            data = bytearray(total * ENTRY.size)
        if len(data) != total * ENTRY.size:
            raise MalformedDocument(f"tile index holds {len(data)} bytes of entries, its levels need "
                                    f"{total * ENTRY.size}")
        self.entries = data

    @classmethod
    def for_levels(cls, geometry: Geometry, top_stored: int) -> TileIndex:
        """An empty index of levels 0..top_stored of ``geometry`` (none for -1)."""
        return cls([geometry.tile_counts(z) for z in range(top_stored + 1)])

    @property
    def levels(self) -> int:
        return len(self.counts)

    def position(self, z: int, x: int, y: int) -> int:
        if not 0 <= z < self.levels:
            raise KeyError(tile_name(z, x, y))
        cols, rows = self.counts[z]
        if not (0 <= x < cols and 0 <= y < rows):
            raise KeyError(tile_name(z, x, y))
        return self.starts[z] + y * cols + x

    def get(self, z: int, x: int, y: int) -> TileEntry | None:
        """The entry of tile (z, x, y), or None if the tile is not stored (or outside the index)."""
        try:
            at = self.position(z, x, y) * ENTRY.size
        except KeyError:
            return None
        pack, length, offset, digest = ENTRY.unpack_from(self.entries, at)
        return TileEntry(pack, offset, length, digest) if length else None

    def set(self, z: int, x: int, y: int, entry: TileEntry) -> None:
        ENTRY.pack_into(self.entries, self.position(z, x, y) * ENTRY.size, entry.pack, entry.length,
                        entry.offset, entry.digest)

    def stored(self) -> Iterator[tuple[int, int, int, TileEntry]]:
        """(z, x, y, entry) of every stored tile, level by level, row-major."""
        for z, (cols, rows) in enumerate(self.counts):
            for y in range(rows):
                for x in range(cols):
                    entry = self.get(z, x, y)
                    if entry is not None:
                        yield z, x, y, entry

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TileIndex) and self.counts == other.counts and self.entries == other.entries

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> TileIndex:
        return TileIndex(self.counts, bytearray(self.entries))

    def to_bytes(self) -> bytes:
        head = _HEAD.pack(MAGIC, VERSION, self.levels) + b"".join(_LEVEL.pack(c, r) for c, r in self.counts)
        return head + bytes(self.entries)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "tile index") -> TileIndex:
        """The index in ``data``; MalformedDocument if it is not one."""
        try:
            magic, version, levels = _HEAD.unpack_from(data, 0)
            if magic != MAGIC or version != VERSION:
                raise MalformedDocument(f"{what}: not a gigatile tile index (version {VERSION})")
            counts = [_LEVEL.unpack_from(data, _HEAD.size + n * _LEVEL.size) for n in range(levels)]
        except struct.error:
            raise MalformedDocument(f"{what}: truncated") from None
        return cls([tuple(c) for c in counts], bytearray(data[_HEAD.size + levels * _LEVEL.size:]))


def tiles_set_json(entries: Iterable[tuple[int, int, int, TileEntry]], packs: list[str]) -> dict[str, list]:
    """A diff's ``tiles_set``: ``{"z/x/y": [pack key, offset, length, digest hex]}``."""
    return {tile_name(z, x, y): [packs[e.pack], e.offset, e.length, e.digest.hex()] for z, x, y, e in entries}


def apply_tiles(index: TileIndex, packs: list[str], tiles_set: dict[str, list]) -> None:
    """Set the tiles a diff lists, in place; pack keys new to ``packs`` are appended to it."""
    numbers = {key: n for n, key in enumerate(packs)}
    for name, (pack, offset, length, digest) in tiles_set.items():
        if pack not in numbers:
            numbers[pack] = len(packs)
            packs.append(pack)
        z, x, y = parse_tile_name(name)
        try:
            index.set(z, x, y, TileEntry(numbers[pack], int(offset), int(length), bytes.fromhex(digest)))
        except (KeyError, ValueError, struct.error) as exc:
            raise MalformedDocument(f"diff tile {name!r} does not fit the index ({exc})") from None
