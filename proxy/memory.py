"""The in-memory LRU of hot tiles in front of the disk cache, bounded in bytes."""

from __future__ import annotations

from collections import OrderedDict

from proxy.entry import Entry


class MemoryCache:
    """Least-recently-used entries up to ``max_bytes``; entries above ``max_item`` bytes are not kept."""

    def __init__(self, max_bytes: int, max_item: int = 512 << 10):
        self.max_bytes = max(0, max_bytes)
        self.max_item = min(max_item, self.max_bytes // 8)
        self.bytes = 0
        self._items: OrderedDict[bytes, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, target: bytes) -> Entry | None:
        entry = self._items.get(target)
        if entry is not None:
            self._items.move_to_end(target)
        return entry

    def put(self, entry: Entry) -> None:
        if entry.size > self.max_item:
            return
        self.discard(entry.target)
        self._items[entry.target] = entry
        self.bytes += entry.size
        while self.bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.bytes -= old.size

    def discard(self, target: bytes) -> None:
        old = self._items.pop(target, None)
        if old is not None:
            self.bytes -= old.size
