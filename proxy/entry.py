"""A stored response: what is kept, for how long, and its file format. Pure: no I/O here.

Only ``200`` responses whose ``Cache-Control`` lets a shared cache store them are kept, for their
``s-maxage``/``max-age``. The headers replayed on a hit are the ones below; nothing else from the backend
is stored.

File format (text head, then the body; no JSON to parse on a disk hit)::

    GTC1
    target /tiles/covers/3/1/2.jpg?v=4
    stored 1764000000.125
    expires 1795536000.125
    length 18234
    h content-type image/jpeg
    h cache-control public, max-age=31536000, immutable
    <empty line>
    <length bytes of body>
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAGIC = b"GTC1\n"
REPLAYED = (b"content-type", b"cache-control", b"etag", b"x-tile-version", b"last-modified", b"link")
CORS = [(b"access-control-allow-origin", b"*"),
        (b"access-control-expose-headers", b"ETag, Last-Modified, Link, X-Tile-Version, X-Cache, Retry-After")]
_NEVER = ("no-store", "no-cache", "private")


def lifetime(cache_control: str) -> int | None:
    """Seconds a shared cache may serve the response without asking again, or None if it must not store it."""
    directives = {}
    for part in cache_control.lower().split(","):
        name, _, value = part.strip().partition("=")
        directives[name] = value.strip().strip('"')
    if any(name in directives for name in _NEVER):
        return None
    for name in ("s-maxage", "max-age"):
        if name in directives:
            try:
                seconds = int(directives[name])
            except ValueError:
                return None
            return seconds if seconds > 0 else None
    return None


@dataclass(slots=True)
class Entry:
    """A response ready to replay: ``headers`` are ASGI header pairs without length or X-Cache."""

    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stored: float
    expires: float
    etag: bytes = b""
    hit_headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # headers + length + X-Cache: HIT
    wire: bytes = b""  # the HIT's status line and headers as sent (fastpath.py), built at its first hit

    def __post_init__(self) -> None:
        for name, value in self.headers:
            if name == b"etag":
                self.etag = value
        self.hit_headers = [*self.headers, *CORS, (b"content-length", str(len(self.body)).encode()),
                            (b"x-cache", b"HIT")]

    @property
    def size(self) -> int:
        return len(self.body) + 256  # the head and the bookkeeping, roughly

    def fresh(self, now: float) -> bool:
        return now < self.expires


def make_entry(target: bytes, headers: list[tuple[bytes, bytes]], body: bytes, now: float,
               seconds: int) -> Entry:
    """An entry for a response just fetched, kept ``seconds``; only the replayed headers are retained."""
    kept = [(n, v) for n, v in headers if n in REPLAYED and b"\n" not in v and b"\r" not in v]
    return Entry(target, kept, body, now, now + seconds)


def encode(entry: Entry) -> bytes:
    """The file content for ``entry``."""
    head = [MAGIC, b"target ", entry.target, b"\nstored ", repr(entry.stored).encode(), b"\nexpires ",
            repr(entry.expires).encode(), b"\nlength ", str(len(entry.body)).encode(), b"\n"]
    for name, value in entry.headers:
        head += [b"h ", name, b" ", value, b"\n"]
    head.append(b"\n")
    return b"".join(head) + entry.body


def decode(data: bytes) -> Entry | None:
    """The entry in ``data``, or None when it is not a whole, well-formed entry (torn, foreign, damaged)."""
    if not data.startswith(MAGIC):
        return None
    end = data.find(b"\n\n")
    if end < 0:
        return None
    fields: dict[bytes, bytes] = {}
    headers: list[tuple[bytes, bytes]] = []
    try:
        for line in data[len(MAGIC):end].split(b"\n"):
            name, _, value = line.partition(b" ")
            if name == b"h":
                header, _, header_value = value.partition(b" ")
                headers.append((header, header_value))
            else:
                fields[name] = value
        body = data[end + 2:]
        if int(fields[b"length"]) != len(body):
            return None
        return Entry(fields[b"target"], headers, body, float(fields[b"stored"]), float(fields[b"expires"]))
    except (KeyError, ValueError):
        return None
