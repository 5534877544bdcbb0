"""Transfer progress: rates in the log every few seconds, and an optional rich bar for a person."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress

log = logging.getLogger(__name__)


class Meter:
    """Counts the bytes of one dataset's pass; logs ``progress`` lines every ``every`` seconds."""

    def __init__(self, dataset: str, bar: Progress | None = None, every: float = 5.0):
        self.dataset = dataset
        self.bar = bar
        self.every = every
        self.total = 0
        self.done = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._logged = self._started
        self._task = None

    def plan(self, objects: int, nbytes: int) -> None:
        with self._lock:
            self.total, self.done = nbytes, 0
            self._started = self._logged = time.monotonic()
        if self.bar is not None and nbytes:
            self._task = self.bar.add_task(f"{self.dataset}: {objects} objects", total=nbytes)

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            now = time.monotonic()
            due = now - self._logged >= self.every
            if due:
                self._logged = now
            done, total, seconds = self.done, self.total, now - self._started
        if self._task is not None:
            self.bar.advance(self._task, nbytes)
        if due:
            log.info("progress dataset=%s bytes=%d total=%d rate_mbps=%.1f", self.dataset, done, total,
                     done / 1e6 / max(seconds, 1e-9))


def progress_bar(console) -> Progress:
    """The bar ``--progress`` shows (bytes, rate, time left); rich is imported only when one is asked for."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)
