"""A bounded LRU of encoded tiles (bytes), keyed by what determines their pixels."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class TileCache:
    """At most ``max_bytes`` of entries, each at most ``max_entry`` bytes (default: any that fits)."""

    def __init__(self, max_bytes: int, max_entry: int | None = None):
        self.max_bytes = max_bytes
        self.max_entry = max_bytes if max_entry is None else min(max_entry, max_bytes)
        self.nbytes = 0
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: Hashable, data: bytes) -> None:
        if len(data) > self.max_entry:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= len(old)
            self._entries[key] = data
            self.nbytes += len(data)
            while self.nbytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.nbytes -= len(evicted)

    def __len__(self) -> int:
        return len(self._entries)
