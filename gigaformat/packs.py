"""Pack files: a few large objects holding many blobs (mip chains, overview tiles).

A blob is addressed by (pack key, offset, length), as the state's records name it. Packs are named
``<step prefix>pack-NNN.bin`` (``snap-3/pack-000.bin``), roll over past ``PACK_TARGET_BYTES``, and start
every blob on a 64-byte boundary (numpy views of mip chains are aligned). A pack is written once and
never changed; readers map it read-only (``tiler.packspace``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ALIGN = 64
PACK_TARGET_BYTES = 128 << 20  # roll to a new pack past this; packs are few and large (>= 8 MB)


def pack_key(prefix: str, number: int) -> str:
    return f"{prefix}pack-{number:03d}.bin"


@dataclass(frozen=True)
class PackFile:
    key: str      # key relative to the dataset prefix, e.g. "snap-3/pack-000.bin"
    path: Path    # where it was written locally
    size: int
    sha256: str


class PackWriter:
    """Append blobs to pack files named ``<prefix>pack-NNN.bin`` under ``folder``; ``on_close(pack)`` is
    called as each pack is complete (so it can be uploaded while the next one fills)."""

    def __init__(self, folder: Path, prefix: str, target_bytes: int = PACK_TARGET_BYTES,
                 on_close: Callable[[PackFile], None] | None = None):
        self.folder = Path(folder)
        self.prefix = prefix
        self.target_bytes = target_bytes
        self.on_close = on_close
        self.done: list[PackFile] = []
        self._handle = None
        self._hash = None
        self._size = 0
        self._key = ""

    def _open(self) -> None:
        self._key = pack_key(self.prefix, len(self.done))
        path = self.folder / self._key
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("wb")
        self._hash = hashlib.sha256()
        self._size = 0

    def _close(self) -> None:
        if self._handle is None:
            return
        self._handle.close()
        pack = PackFile(self._key, self.folder / self._key, self._size, self._hash.hexdigest())
        self.done.append(pack)
        self._handle = None
        if self.on_close is not None:
            self.on_close(pack)

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
