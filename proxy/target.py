"""Check a request target (path and query) before anything touches a backend or the disk.

Tile URLs are plain: letters, digits and a few marks. A percent-escape of one of those marks is decoded
(``%2D`` is ``-``: the same URL, RFC 3986 section 6.2.2.2) and the result checked like any other path;
anything else (other escapes, ``..``, ``//``, NUL, backslashes, absurd lengths) is refused here, so no later
step has to think about it. A query is never a file name (cache entries are named by a hash): it may also
hold well-formed percent-escapes (a search for "Søren" is ``q=S%C3%B8ren``), forwarded as they are.
"""

from __future__ import annotations

import re

from proxy.errors import BadTarget, TargetTooLong

MAX_PATH = 256
MAX_QUERY = 512  # a search of 8 words, escaped
# RFC 3986 path characters without '%': no escapes means no encoded '/', '..' or NUL can slip through.
_PATH = re.compile(rb"^/[A-Za-z0-9._~!$&'()*+,;=:@/^-]*$")  # '^': IIIF sizes (upscaling)
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_DECODABLE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@^")


def _decode(match: re.Match) -> bytes:
    byte = int(match[1], 16)
    if byte not in _DECODABLE:
        raise BadTarget("path may contain percent-escapes only of letters, digits and -._~!$&'()*+,;=:@^")
    return bytes((byte,))


def normalize_path(raw_path: bytes) -> bytes:
    """``raw_path`` with its escapes of plain characters decoded; BadTarget for any other escape."""
    return _ESCAPE.sub(_decode, raw_path) if b"%" in raw_path else raw_path
_QUERY = re.compile(rb"^(?:[A-Za-z0-9._~!$'()*+,;=:@/&-]|%[0-9A-Fa-f]{2})*$")


def check_target(raw_path: bytes, query: bytes) -> bytes:
    """The target ``path[?query]`` as bytes, or BadTarget (TargetTooLong when too long)."""
    raw_path = normalize_path(raw_path)
    if len(raw_path) > MAX_PATH or len(query) > MAX_QUERY:
        raise TargetTooLong(f"URL too long (path at most {MAX_PATH}, query at most {MAX_QUERY} characters)")
    if not _PATH.match(raw_path):
        raise BadTarget("path may contain only letters, digits and -._~!$&'()*+,;=:@/^")
    if b"//" in raw_path or b"/./" in raw_path + b"/" or b"/../" in raw_path + b"/":
        raise BadTarget("path may not contain '//', '.' or '..' segments")
    if not query:
        return raw_path
    if not _QUERY.match(query):
        raise BadTarget("query may contain only letters, digits, -._~!$'()*+,;=:@/& and percent-escapes (%HH)")
    return raw_path + b"?" + query


def query_version(query: bytes) -> bytes | None:
    """The ``v=`` value of a query (as bytes), or None."""
    for pair in query.split(b"&"):
        if pair.startswith(b"v="):
            return pair[2:]
    return None


def asked_version(target: bytes) -> bytes | None:
    """The ``v=`` value of ``target``'s query, or None."""
    return query_version(target.partition(b"?")[2])


def is_versioned(query: bytes) -> bool:
    """True when the URL names a tile version (``v=``): its response is immutable, never served stale."""
    return query_version(query) is not None
