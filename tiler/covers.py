"""Source images decoded at their items' sizes, kept in a bounded LRU while a build walks the wall.

The pyramid is built tile by tile in Z-order, so an item is needed by a few neighbouring tiles in a row;
the cache keeps the most recently used ones (by bytes) so that most images are decoded once. Threads share
it; an image being decoded by one thread is waited for, not decoded twice.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future

import numpy as np

from tiler.variants import load_scaled

DEFAULT_CACHE_BYTES = 384 << 20


class CoverCache:
    """``get(variant)``: the (h, w, 3) pixels of an image at one size, decoded on first use."""

    def __init__(self, sources: dict[str, tuple[str, int, int, str]], background: tuple[int, int, int],
                 max_bytes: int = DEFAULT_CACHE_BYTES):
        self.sources = sources  # variant -> (image path, width, height, where: its items.csv row)
        self.background = background
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.decoded = 0
        self._entries: OrderedDict[str, Future] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, variant: str) -> np.ndarray:
        with self._lock:
            found = self._entries.get(variant)
            owner = found is None
            if owner:
                found = Future()
                self._entries[variant] = found
            else:
                self._entries.move_to_end(variant)
        if owner:
            try:
                path, width, height, where = self.sources[variant]
                pixels = load_scaled(path, width, height, self.background, where)
            except BaseException as exc:
                with self._lock:
                    self._entries.pop(variant, None)
                found.set_exception(exc)
                raise
            found.set_result(pixels)
            self._account(variant, pixels.nbytes)
        return found.result()

    def _account(self, variant: str, nbytes: int) -> None:
        with self._lock:
            self.decoded += 1
            if variant not in self._entries:
                return
            self.nbytes += nbytes
            while self.nbytes > self.max_bytes and len(self._entries) > 1:
                _, oldest = self._entries.popitem(last=False)
                if oldest.done() and oldest.exception() is None:
                    self.nbytes -= oldest.result().nbytes
