"""Coalescing: concurrent callers of one key share one fetch, its result and its failure."""

from __future__ import annotations

import asyncio

import pytest

from proxy.coalesce import Coalescer


def test_hundred_concurrent_callers_make_one_fetch():
    calls = []

    async def main():
        coalescer: Coalescer[str] = Coalescer()
        gate = asyncio.Event()

        async def fetch():
            calls.append(1)
            await gate.wait()
            return "tile"

        callers = [asyncio.ensure_future(coalescer.run("k", fetch)) for _ in range(100)]
        await asyncio.sleep(0.01)
        assert len(coalescer) == 1
        gate.set()
        results = await asyncio.gather(*callers)
        assert results == ["tile"] * 100 and coalescer.shared == 99 and len(coalescer) == 0
        assert await coalescer.run("k", fetch) == "tile"  # landed: the next caller fetches anew

    asyncio.run(main())
    assert len(calls) == 2


def test_distinct_keys_fetch_separately_and_failures_reach_everyone():
    async def main():
        coalescer: Coalescer[int] = Coalescer()

        async def fetch(n):
            await asyncio.sleep(0.01)
            return n

        assert await asyncio.gather(coalescer.run(1, lambda: fetch(1)), coalescer.run(2, lambda: fetch(2))) == [1, 2]

        async def broken():
            await asyncio.sleep(0.01)
            raise RuntimeError("backend gone")

        results = await asyncio.gather(*(coalescer.run("x", broken) for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert len(coalescer) == 0

    asyncio.run(main())


def test_a_caller_going_away_does_not_cancel_the_fetch_for_others():
    async def main():
        coalescer: Coalescer[str] = Coalescer()

        async def fetch():
            await asyncio.sleep(0.05)
            return "done"

        first = asyncio.ensure_future(coalescer.run("k", fetch))
        second = asyncio.ensure_future(coalescer.run("k", fetch))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await second == "done"

    asyncio.run(main())
