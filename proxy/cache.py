"""The on-disk cache: bounded size, least-recently-used eviction, atomic writes, rebuilt at start.

Layout under ``--cache-dir``::

    objects/ab/ab12…ef    one entry per file, named by sha256(target); never by anything the client sent
    tmp/                  files being written; renamed into objects/ when whole (cleared at start)

A reader sees either the old file or the new one, never a torn one (rename is atomic, and ``entry.decode``
checks the body length). The index (name -> size, in LRU order) lives in memory and is rebuilt by scanning
``objects/`` at start; a file's mtime is set to its expiry, its ctime orders the rebuilt LRU.
The index is touched only from the event loop; file work runs in threads: reads in a small pool,
writes and deletions in one thread, in order, with a bounded backlog.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import re
import shutil
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from proxy import entry as entry_format
from proxy.entry import Entry

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[0-9a-f]{64}$")
# Beyond these a miss is served but not written to disk (a slow disk must not grow memory without bound).
MAX_PENDING_WRITES = 256
MAX_PENDING_BYTES = 64 << 20


def name_of(target: bytes) -> str:
    """The file name of ``target``'s entry: the hex sha256 of the full path and query."""
    return hashlib.sha256(target).hexdigest()


class DiskCache:
    def __init__(self, root: Path, max_bytes: int, max_entries: int | None = None):
        self.root = root
        self.objects = root / "objects"
        self.tmp = root / "tmp"
        self.max_bytes = max_bytes
        # Tiny entries must not grow the in-memory index without bound.
        self.max_entries = max_entries or max(1024, max_bytes // 2048)
        self.bytes = 0
        self.evictions = 0
        self.dropped_writes = 0
        self.pending_writes = 0
        self.pending_bytes = 0
        self._index: OrderedDict[str, int] = OrderedDict()
        self._counter = itertools.count()
        self._closed = False
        self._readers = ThreadPoolExecutor(4, thread_name_prefix="cache-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="cache-write")

    def __len__(self) -> int:
        return len(self._index)

    def path(self, name: str) -> Path:
        return self.objects / name[:2] / name

    def open(self) -> None:
        """Create the folders, clear leftovers of interrupted writes, rebuild the index from the files."""
        started = time.monotonic()
        self.objects.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        found: list[tuple[float, str, int]] = []
        for sub in os.scandir(self.objects):
            if not (sub.is_dir(follow_symlinks=False) and len(sub.name) == 2):
                continue
            for item in os.scandir(sub.path):
                if _NAME.match(item.name) and item.name[:2] == sub.name and item.is_file(follow_symlinks=False):
                    stat = item.stat(follow_symlinks=False)
                    found.append((stat.st_ctime, item.name, stat.st_size))
        found.sort()
        self._index = OrderedDict((name, size) for _, name, size in found)
        self.bytes = sum(size for _, _, size in found)
        self._delete(self._evict())
        log.info("cache opened dir=%s entries=%d bytes=%d seconds=%.2f", self.root, len(self._index), self.bytes,
                 time.monotonic() - started)

    def close(self) -> None:
        self._closed = True
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)

    def contains(self, name: str) -> bool:
        return name in self._index

    async def read(self, name: str, target: bytes) -> Entry | None:
        """The entry stored for ``target``, or None (not there, damaged or gone); marks it recently used."""
        if name not in self._index:
            return None
        self._index.move_to_end(name)
        found = await asyncio.get_running_loop().run_in_executor(self._readers, self._read_file, name)
        if found is None or found.target != target:
            self._forget(name)
            return None
        return found

    def store(self, entry: Entry) -> None:
        """Write ``entry`` in the background (atomically); evict least-recently-used files beyond the bounds."""
        if self._closed:
            return
        if self.pending_writes >= MAX_PENDING_WRITES or self.pending_bytes >= MAX_PENDING_BYTES:
            self.dropped_writes += 1
            return
        name = name_of(entry.target)
        data = entry_format.encode(entry)
        self.pending_writes += 1
        self.pending_bytes += len(data)
        future = asyncio.get_running_loop().run_in_executor(self._writer, self._write_file, name, data,
                                                            entry.expires)
        future.add_done_callback(lambda f: self._written(f, name, len(data)))

    def _written(self, future: asyncio.Future, name: str, size: int) -> None:
        self.pending_writes -= 1
        self.pending_bytes -= size
        if future.cancelled() or future.exception() is not None:
            log.warning("cache write failed name=%s error=%s", name, future.exception())
            return
        self._forget(name)
        self._index[name] = size
        self.bytes += size
        victims = self._evict()
        if victims and not self._closed:  # once closed, the bound is applied again at the next open()
            self._writer.submit(self._delete, victims)

    def _evict(self) -> list[str]:
        victims = []
        while self._index and (self.bytes > self.max_bytes or len(self._index) > self.max_entries):
            name, size = self._index.popitem(last=False)
            self.bytes -= size
            victims.append(name)
        self.evictions += len(victims)
        return victims

    def _forget(self, name: str) -> None:
        size = self._index.pop(name, None)
        if size is not None:
            self.bytes -= size

    def _read_file(self, name: str) -> Entry | None:
        try:
            data = self.path(name).read_bytes()
        except OSError:
            return None
        return entry_format.decode(data)

    def _write_file(self, name: str, data: bytes, expires: float) -> None:
        final = self.path(name)
        final.parent.mkdir(exist_ok=True)
        temp = self.tmp / f"{name}.{os.getpid()}.{next(self._counter)}"
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
            os.utime(temp, (expires, expires))
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _delete(self, names: list[str]) -> None:
        for name in names:
            self.path(name).unlink(missing_ok=True)
