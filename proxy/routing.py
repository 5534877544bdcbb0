"""Which backend serves which path: rendezvous (highest random weight) hashing. Pure functions.

Every backend scores every key; the highest score wins, the next ones are the fallback order. A backend
that joins or leaves moves only the keys it wins (about 1/N of them); the others keep their node, so the
nodes' own tile caches stay hot.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b


def score(backend: str, key: bytes) -> int:
    """A stable pseudo-random weight of ``key`` on ``backend`` (64 bits)."""
    return int.from_bytes(blake2b(key, digest_size=8, key=backend.encode()[:64]).digest(), "big")


def rank(key: bytes, backends: Sequence[str]) -> list[str]:
    """``backends`` in the order to try for ``key``: the owner first, then the fallbacks."""
    if len(backends) <= 1:
        return list(backends)
    return sorted(backends, key=lambda b: score(b, key), reverse=True)


def pick(key: bytes, backends: Sequence[str]) -> str | None:
    """The owner of ``key``, or None when there is no backend."""
    if not backends:
        return None
    return max(backends, key=lambda b: score(b, key))


def shares(backends: Sequence[str], samples: int = 4096) -> dict[str, float]:
    """The fraction of a fixed sample of tile paths each backend owns (0..1, summing to 1)."""
    counts = dict.fromkeys(backends, 0)
    if not backends:
        return {}
    for i in range(samples):
        counts[pick(f"/tiles/sample/{i % 17}/{i}/{i * 7919 % 4099}.jpg".encode(), backends)] += 1
    return {b: counts[b] / samples for b in backends}
