"""Pack files: a few large objects holding many blobs (mip chains, overview tiles).

A blob is addressed by (pack key, offset, length). Blobs start on 64-byte boundaries so numpy views
of mip chains are aligned. Packs are written once and never changed; readers map them read-only.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ALIGN = 64
PACK_TARGET_BYTES = 128 << 20  # roll to a new pack past this; packs are few and large (>= 8 MB)


@dataclass(frozen=True)
class PackFile:
    key: str      # key relative to the dataset prefix, e.g. "snap-3/pack-000.bin"
    path: Path    # where it was written locally
    size: int
    sha256: str


class PackWriter:
    """Append blobs to pack files named ``<prefix>pack-NNN.bin`` under ``folder``."""

    def __init__(self, folder: Path, prefix: str, target_bytes: int = PACK_TARGET_BYTES):
        self.folder = Path(folder)
        self.prefix = prefix
        self.target_bytes = target_bytes
        self.done: list[PackFile] = []
        self._handle = None
        self._hash = None
        self._size = 0
        self._key = ""

    def _open(self) -> None:
        self._key = f"{self.prefix}pack-{len(self.done):03d}.bin"
        path = self.folder / self._key
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("wb")
        self._hash = hashlib.sha256()
        self._size = 0

    def _close(self) -> None:
        if self._handle is None:
            return
        self._handle.close()
        self.done.append(PackFile(self._key, self.folder / self._key, self._size, self._hash.hexdigest()))
        self._handle = None

    def add(self, data: bytes | memoryview) -> tuple[str, int]:
        """Write one blob; return (pack key, offset)."""
        if self._handle is not None and self._size >= self.target_bytes:
            self._close()
        if self._handle is None:
            self._open()
        pad = -self._size % ALIGN
        if pad:
            self._write(b"\0" * pad)
        offset = self._size
        self._write(data)
        return self._key, offset

    def _write(self, data: bytes | memoryview) -> None:
        self._handle.write(data)
        self._hash.update(data)
        self._size += len(data)

    def finish(self) -> list[PackFile]:
        self._close()
        return list(self.done)


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
