"""bench/pagecache.py: evicting a file from the page cache, and counting what of it is resident."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest

from bench import pagecache


def on_tmpfs(path: Path) -> bool:
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    best = max((m for m in mounts if str(path.resolve()).startswith(m[1])), key=lambda m: len(m[1]))
    return best[2] in ("tmpfs", "ramfs")


def test_evicted_pages_leave_the_cache_but_mapped_ones_stay(tmp_path: Path) -> None:
    if on_tmpfs(tmp_path):
        pytest.skip("tmpfs pages are the file itself: nothing to evict")
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(4 << 20))
    with path.open("rb") as handle:
        os.fsync(handle.fileno())  # DONTNEED drops clean pages only
        handle.read()
    assert pagecache.resident_fraction([path]) == 1.0
    pagecache.evict([path])
    assert pagecache.resident_fraction([path]) == 0.0
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        assert sum(mapped[i] for i in range(0, len(mapped), mmap.PAGESIZE)) >= 0  # fault every page in
        pagecache.evict([path])
        assert pagecache.resident_fraction([path]) == 1.0  # mapped by this process: kept
    pagecache.evict([path])
    assert pagecache.resident_fraction([path]) == 0.0


def test_an_empty_file_has_no_pages(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert pagecache.resident_pages(tmp_path / "empty") == (0, 0)
    assert pagecache.resident_fraction([tmp_path / "empty"]) == 0.0
