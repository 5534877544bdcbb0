"""glibc's allocator tuned so that image-sized buffers are reused from request to request, and a burst of
large IIIF answers gives its memory back to the system once the burst is over.

By default glibc serves a block of 128 KiB or more as a mapping of its own and raises that threshold each
time such a block is freed (up to 32 MiB), while ``free`` gives the top of a heap back to the system beyond
128 KiB. Either way a request's image buffers are fresh pages every time: a 1024² answer's 3 MB window cost
~2 ms of page faults (a fifth of the request); and once the threshold has grown, what a burst freed stays
mapped (a worker's anonymous memory rose 307 -> 493 MB after 96 concurrent 2048-px requests and stayed).

Here both thresholds are fixed: blocks below ``MMAP_THRESHOLD`` (4 MiB: a 1024² answer's window) come from
the heaps, and ``free`` never trims them, so the next request reuses what the last one freed; ``trim`` hands
everything free back once the IIIF pool has been idle a moment (``app.IiifPool.trim_due``) and after a
dataset loads. Larger blocks stay mappings of their own, returned on free: with the threshold at 32 MiB a
worker's anonymous memory was 126 MB at ready and 198 MB after two bursts of 2048-px answers and a trim;
at 4 MiB, 125 and 132 MB (at 1 MiB, 111 and 128 MB, but every 1024² window paid its page faults).
Elsewhere than glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20  # smaller blocks come from the heaps; this and larger are mappings of their own
TRIM_THRESHOLD = 1 << 30  # free() itself never trims: trim() does, when idle

_libc = None
try:
    _libc = ctypes.CDLL(None)  # the C library this process runs on (ctypes.util's import: 26-32 ms per start)
    _libc.malloc_trim  # noqa: B018 (glibc only)
    _libc.mallopt  # noqa: B018
except (OSError, AttributeError):
    _libc = None


def keep_freed_until_trim() -> bool:
    """Fix both thresholds (no more dynamic growth, no trimming on free); True when the allocator took them."""
    return bool(_libc is not None and _libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and _libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def trim() -> None:
    """Return the free memory of every arena to the system."""
    if _libc is not None:
        _libc.malloc_trim(0)
