"""glibc's allocator tuned so that a burst of large IIIF answers gives its memory back to the system.

By default glibc raises its mmap threshold each time a large block is freed (up to 32 MB), so after a
burst the next large buffers come from the heap arenas, where freed memory stays mapped: a worker's
anonymous memory rose 307 -> 493 MB after 96 concurrent 2048-px requests and stayed there. With the
threshold fixed at 1 MiB every image-sized buffer is its own mapping, returned on free, and ``trim`` hands
back what the arenas hold once the IIIF pool falls idle. Elsewhere than glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20

_libc = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _libc.malloc_trim  # noqa: B018 (glibc only)
    _libc.mallopt  # noqa: B018
except (OSError, AttributeError):
    _libc = None


def fix_mmap_threshold() -> bool:
    """Fix the mmap threshold (no more dynamic growth); True when the allocator took it."""
    return bool(_libc is not None and _libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def trim() -> None:
    """Return the free memory of every arena to the system."""
    if _libc is not None:
        _libc.malloc_trim(0)
