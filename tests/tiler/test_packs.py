"""Pack files written by PackWriter and mapped back to back by PackSpace."""

from __future__ import annotations

import gc
import mmap

import numpy as np
import pytest

from gigaformat.packs import PackWriter
from tiler.compose import MipStore
from tiler.mips import chain_sizes, mip_chain
from tiler.packspace import PackSpace


def _mapped_ranges() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


def test_every_blob_of_every_pack_reads_back_through_one_array(tmp_path):
    writer = PackWriter(tmp_path, "snap-1/", target_bytes=5000)  # small packs: several files
    blobs = [bytes([n % 251]) * (1000 + 37 * n) for n in range(12)]
    where = [writer.add(blob) for blob in blobs]
    packs = writer.finish()
    assert len(packs) > 2
    space = PackSpace(tmp_path, sorted(p.key for p in packs))
    for blob, (key, offset) in zip(blobs, where, strict=True):
        assert space.blob(key, offset, len(blob)).tobytes() == blob
    assert all(start % mmap.PAGESIZE == 0 for start in space.start.values())
    with pytest.raises(ValueError):
        space.array[0] = 1  # read-only


def test_views_outlive_the_space_and_the_maps_go_with_the_last_view(tmp_path):
    writer = PackWriter(tmp_path, "p/")
    key, offset = writer.add(b"\x07" * 10000)
    writer.finish()
    before = _mapped_ranges()
    space = PackSpace(tmp_path, [key])
    view = space.blob(key, offset, 10000)
    del space
    gc.collect()
    assert view.sum() == 7 * 10000  # still mapped: a request rendering from a swapped-out generation
    del view
    gc.collect()
    assert _mapped_ranges() <= before


def test_mip_store_finds_every_level_and_refuses_chains_outside_its_pixels():
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in ((5, 3), (1, 1), (16, 9))]
    chains = [mip_chain(image) for image in images]
    data = b"".join(level.tobytes() for chain in chains for level in chain)
    sizes = chain_sizes([image.shape[1] for image in images], [image.shape[0] for image in images])
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    store = MipStore(np.frombuffer(data, np.uint8), offsets, [i.shape[1] for i in images],
                     [i.shape[0] for i in images])
    for v, chain in enumerate(chains):
        for k in range(len(chain) + 2):  # past the end: the last (1x1) level
            assert np.array_equal(store.mip(v, k), chain[min(k, len(chain) - 1)])
    with pytest.raises(ValueError):
        MipStore(np.frombuffer(data, np.uint8), offsets + 1, [i.shape[1] for i in images],
                 [i.shape[0] for i in images])
