"""Reading a generation's stored tiles: one ``pread`` of a verified pack file per tile.

Pack files are opened once (the descriptor keeps a pack readable after boxlink deletes it, so a generation
swapped out while a request reads from it stays valid) with ``POSIX_FADV_RANDOM``: a cold read fetches the
tile's few kilobytes, not the disk's read-ahead window (8 MB here: docs/pitfalls.md). In a lazy start, a
pack not on disk yet (boxlink names a pack only once it is complete and verified) is read from S3
(``lazyfetch.RemoteTiles``) until it arrives.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from gigaformat.tiles import TileEntry
from tiler.errors import CorruptData
from tiler.lazyfetch import RemoteTiles


class TileStore:
    """The tiles of one generation: ``packs`` are its pack keys (numbered as the index numbers them)."""

    def __init__(self, folder: Path, packs: list[str], remote: RemoteTiles | None = None):
        self.folder = Path(folder)
        self.packs = packs
        self.remote = remote
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def _fd(self, pack: int) -> int | None:
        """The pack's descriptor; None if it is not on disk yet and S3 may be read instead."""
        fd = self._fds.get(pack)
        if fd is None:
            with self._lock:
                fd = self._fds.get(pack)
                if fd is None:
                    path = self.folder / self.packs[pack]
                    try:
                        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    except FileNotFoundError:
                        if self.remote is not None:
                            return None
                        raise CorruptData(f"pack {path} is missing") from None
                    except OSError as exc:
                        raise CorruptData(f"pack {path} cannot be read ({exc.strerror})") from None
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
                    self._fds[pack] = fd
        return fd

    def read(self, entry: TileEntry) -> bytes:
        """The stored bytes of one tile."""
        fd = self._fd(entry.pack)
        if fd is None:
            return self.remote.read(self.packs[entry.pack], entry)
        data = os.pread(fd, entry.length, entry.offset)
        if len(data) != entry.length:
            raise CorruptData(f"pack {self.packs[entry.pack]} ends before the tile at {entry.offset}")
        return data

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def __del__(self) -> None:
        self.close()
