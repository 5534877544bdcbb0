"""The entry format, the in-memory LRU and the disk cache (bounds, eviction order, restart, damage)."""

from __future__ import annotations

import asyncio
import os
import time

from proxy.cache import DiskCache, name_of
from proxy.entry import Entry, decode, encode, lifetime, make_entry
from proxy.memory import MemoryCache

JPEG = [(b"content-type", b"image/jpeg"), (b"cache-control", b"public, max-age=31536000, immutable"),
        (b"etag", b'"covers-v3-q85"'), (b"x-tile-version", b"3")]


def entry(i: int, size: int = 1000, seconds: int = 3600) -> Entry:
    return make_entry(f"/tiles/covers/9/{i}/0.jpg?v=3".encode(), [*JPEG, (b"server", b"x")], bytes([i % 256]) * size,
                      time.time(), seconds)


def test_lifetime_follows_cache_control():
    assert lifetime("public, max-age=31536000, immutable") == 31536000
    assert lifetime("public, max-age=60") == 60
    assert lifetime("max-age=60, s-maxage=5") == 5
    for refused in ("no-cache", "no-store", "private, max-age=60", "max-age=0", "public", "", "max-age=x"):
        assert lifetime(refused) is None, refused


def test_entry_round_trips_and_torn_files_are_refused():
    e = entry(1)
    assert [n for n, _ in e.headers] == [n for n, _ in JPEG]  # only the replayed headers are kept
    data = encode(e)
    back = decode(data)
    assert (back.target, back.headers, back.body, back.expires, back.etag) == (e.target, e.headers, e.body,
                                                                              e.expires, b'"covers-v3-q85"')
    assert decode(data[:-1]) is None and decode(data + b"x") is None and decode(b"junk") is None
    assert decode(data[:40]) is None


def test_memory_lru_is_bounded_in_bytes_and_keeps_recent_entries():
    memory = MemoryCache(20_000, max_item=5000)
    for i in range(50):
        memory.put(entry(i))
        if i >= 10:
            assert memory.get(entry(0).target) is not None  # 0 kept hot by use
    assert memory.bytes <= 20_000 and len(memory) < 50
    assert memory.get(entry(1).target) is None and memory.get(entry(49).target) is not None
    memory.put(entry(99, size=6000))
    assert memory.get(entry(99).target) is None  # too big for the hot set


def run_cache(tmp_path, bound: int, work):
    async def main():
        cache = DiskCache(tmp_path, bound)
        cache.open()
        try:
            await work(cache)
            await written(cache)
            await asyncio.get_running_loop().run_in_executor(cache._writer, lambda: None)  # deletions done
        finally:
            cache.close()
        return cache

    return asyncio.run(main())


def files(tmp_path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (tmp_path / "objects").rglob("*") if p.is_file()}


async def written(cache: DiskCache) -> None:
    for _ in range(2000):  # at most ~10 s
        if not cache.pending_writes:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("cache writes did not finish")


def test_disk_cache_evicts_least_recently_used_within_its_bound(tmp_path):
    async def work(cache):
        for i in range(40):
            cache.store(entry(i))
            await written(cache)
            if i % 5 == 0:
                assert await cache.read(name_of(entry(0).target), entry(0).target) is not None  # keep 0 hot

    cache = run_cache(tmp_path, 12_000, work)
    on_disk = files(tmp_path)
    assert cache.bytes == sum(on_disk.values()) <= 12_000
    assert set(on_disk) == set(cache._index) and cache.evictions == 40 - len(on_disk)
    assert name_of(entry(0).target) in on_disk and name_of(entry(39).target) in on_disk
    assert name_of(entry(1).target) not in on_disk


def test_disk_cache_is_rebuilt_after_a_restart_and_ignores_damage(tmp_path):
    async def fill(cache):
        for i in range(5):
            cache.store(entry(i, seconds=60 * (i + 1)))

    run_cache(tmp_path, 1 << 20, fill)
    (tmp_path / "tmp" / "left-over").write_bytes(b"half a write")
    (tmp_path / "objects" / "zz").mkdir()
    (tmp_path / "objects" / "zz" / "not-ours").write_bytes(b"x")
    damaged = entry(3)
    path = tmp_path / "objects" / name_of(damaged.target)[:2] / name_of(damaged.target)
    path.write_bytes(path.read_bytes()[:-10])  # a torn file must never be served

    async def check(cache):
        assert len(cache) == 5 and os.listdir(tmp_path / "tmp") == []
        got = await cache.read(name_of(entry(1).target), entry(1).target)
        assert got is not None and got.body == entry(1).body and got.fresh(time.time())
        assert abs(os.stat(cache.path(name_of(entry(1).target))).st_mtime - got.expires) < 1  # mtime = expiry
        assert await cache.read(name_of(damaged.target), damaged.target) is None
        assert len(cache) == 4
        assert await cache.read(name_of(b"/never"), b"/never") is None

    run_cache(tmp_path, 1 << 20, check)


def test_disk_cache_bound_is_applied_at_start(tmp_path):
    async def fill(cache):
        for i in range(20):
            cache.store(entry(i))

    run_cache(tmp_path, 1 << 20, fill)
    cache = run_cache(tmp_path, 5_000, lambda cache: asyncio.sleep(0))
    assert cache.bytes <= 5_000 and sum(files(tmp_path).values()) == cache.bytes


def test_cache_file_names_never_come_from_the_request(tmp_path):
    target = b"/tiles/../../../../etc/passwd"
    name = name_of(target)
    cache = DiskCache(tmp_path, 1 << 20)
    assert len(name) == 64 and set(name) <= set("0123456789abcdef")
    assert cache.path(name).parent.parent == tmp_path / "objects"
