"""The page cache of a dataset's data files: evict them (``posix_fadvise(POSIX_FADV_DONTNEED)``, no root
needed), read them in (``warm``), and count how much of them is resident (``mincore`` over a fresh read-only
mapping), so that a cold-cache sample can be taken and shown to have been cold, and a warm one warm.

Linux keeps a page that some process has mapped: ``DONTNEED`` drops only unmapped clean pages. A dataset whose
packs the reading process memory-maps (the chains layout) therefore stays resident however often it is
evicted; ``resident_fraction`` after ``evict`` says so, and the bench reports it beside the figures.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Iterable
from pathlib import Path

from gigaformat.layout import DatasetDir

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte))
_MAP_FAILED = ctypes.c_void_p(-1).value
PAGE = mmap.PAGESIZE


def data_files(folder: DatasetDir) -> list[Path]:
    """Every regular file of the dataset's objects and generations (packs, tile indexes, states)."""
    found = []
    for top in (folder.objects, folder.generations):
        found += [p for p in top.rglob("*") if p.is_file() and not p.is_symlink()]
    return sorted(found)


def evict(paths: Iterable[Path]) -> None:
    """Ask the kernel to drop the files' clean, unmapped pages from the page cache."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(paths: Iterable[Path], block: int = 8 << 20) -> None:
    """Read every file through once, so that its pages are in the page cache (a step that claims a warm page
    cache must not inherit another step's eviction, nor the pages a bigger wall pushed out)."""
    buffer = bytearray(block)
    for path in paths:
        with path.open("rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def resident_pages(path: Path) -> tuple[int, int]:
    """(pages of ``path`` in the page cache, pages of the file), by ``mincore`` on a read-only mapping
    (mapping a file faults nothing in)."""
    size = path.stat().st_size
    pages = -(-size // PAGE)
    if pages == 0:
        return 0, 0
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            vector = (ctypes.c_ubyte * pages)()
            if _libc.mincore(address, size, vector) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
            return sum(byte & 1 for byte in vector), pages
        finally:
            _libc.munmap(address, size)
    finally:
        os.close(fd)


def resident_fraction(paths: Iterable[Path]) -> float:
    """The share of the files' pages that is in the page cache (0 for no pages at all)."""
    resident = total = 0
    for path in paths:
        r, t = resident_pages(path)
        resident, total = resident + r, total + t
    return resident / total if total else 0.0
