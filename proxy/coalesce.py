"""Request coalescing: concurrent misses for one key share one backend request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Runs at most one ``fetch`` per key at a time; callers that arrive meanwhile await its result.

    The fetch runs as its own task, so a caller that goes away (client disconnect) does not cancel it for
    the others. Its exception, if any, reaches every caller.
    """

    def __init__(self, on_shared: Callable[[], None] | None = None) -> None:
        self._flights: dict[Hashable, asyncio.Task[T]] = {}
        self.shared = 0  # callers served by another caller's fetch
        self.on_shared = on_shared

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> T:
        task = self._flights.get(key)
        if task is None:
            task = asyncio.ensure_future(fetch())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        else:
            self.shared += 1
            if self.on_shared is not None:
                self.on_shared()
        return await asyncio.shield(task)

    def _landed(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a fetch nobody awaits any more logs no warning
