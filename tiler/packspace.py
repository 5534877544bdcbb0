"""A generation's pack files mapped read-only, back to back, for the render core (packs: gigaformat.packs)."""

from __future__ import annotations

import ctypes
import mmap
import os
import weakref
from pathlib import Path

import numpy as np


class PackSpace:
    """Every pack of a generation mapped read-only, back to back, into one range of addresses.

    One numpy array then reaches any blob of any pack: compiled code takes it as a single argument
    (no per-pack lists to convert on each call), and a blob is ``array[start[key] + offset:...]``.
    The maps are shared with the page cache (and so between worker processes); they are released
    when the last view of the array is gone, so a generation swapped out while a request still
    renders from it stays valid until that request ends. Linux (mmap with MAP_FIXED), via ctypes.
    """

    def __init__(self, folder: Path, keys: list[str]):
        self.start: dict[str, int] = {}
        sizes = {key: (Path(folder) / key).stat().st_size for key in keys}
        total = 0
        for key in keys:
            self.start[key] = total
            total += -(-max(sizes[key], 1) // mmap.PAGESIZE) * mmap.PAGESIZE
        self.size = total
        base = _libc.mmap(None, max(total, mmap.PAGESIZE), _PROT_NONE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
        if base in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), f"reserving {total} bytes of address space for {folder}")
        span = (ctypes.c_uint8 * max(total, mmap.PAGESIZE)).from_address(base)
        weakref.finalize(span, _libc.munmap, ctypes.c_void_p(base), ctypes.c_size_t(max(total, mmap.PAGESIZE)))
        for key in keys:
            if sizes[key] == 0:
                continue
            fd = os.open(Path(folder) / key, os.O_RDONLY)
            try:
                got = _libc.mmap(base + self.start[key], sizes[key], mmap.PROT_READ, mmap.MAP_SHARED | _MAP_FIXED,
                                 fd, 0)
            finally:
                os.close(fd)
            if got != base + self.start[key]:
                raise OSError(ctypes.get_errno(), f"mapping pack {key} of {folder}")
        self.array = np.frombuffer(span, dtype=np.uint8)  # keeps ``span`` (and so the maps) alive
        self.array.flags.writeable = False

    def blob(self, key: str, offset: int, length: int) -> np.ndarray:
        """A read-only view of ``length`` bytes at ``offset`` of pack ``key``."""
        at = self.start[key] + offset
        return self.array[at:at + length]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_PROT_NONE = 0
_MAP_FIXED = 0x10
_MAP_NORESERVE = 0x4000
_MAP_FAILED = ctypes.c_void_p(-1).value
