"""IIIF renders in a bounded pool of their own (issue 17): a saturated IIIF pool neither blocks tiles nor queues
without bound, and answers already encoded are served from the IIIF cache."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.iiif.test_spec import BASE, make_client
from tests.processes import wait_for
from tiler import malloc
from tiler.app import IiifPool


def test_a_saturated_iiif_pool_leaves_tiles_alone_and_refuses_beyond_its_queue(awkward_root):
    with make_client(awkward_root, iiif_threads=1, iiif_max_queue=2, render_threads=1) as client:
        service = client.app.state.service
        release = threading.Event()
        render = service._render_iiif

        def stuck(*args):
            release.wait(30)
            return render(*args)

        service._render_iiif = stuck
        try:
            with ThreadPoolExecutor(2) as pool:
                held = [pool.submit(client.get, f"{BASE}/{10 * i},0,10,10/max/0/default.jpg") for i in range(2)]
                wait_for(lambda: service.iiif_pool.waiting == 2, 10, "two IIIF requests in the pool")
                busy = client.get(f"{BASE}/500,0,10,10/max/0/default.jpg")
                assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
                for z, x, y in ((3, 1, 1), (3, 2, 1), (2, 0, 0)):  # tiles render while every IIIF thread is stuck
                    assert client.get(f"/tiles/awkward/{z}/{x}/{y}.jpg").status_code == 200
                assert client.get(f"{BASE}/info.json").status_code == 200  # documents never wait for renders
                release.set()
                assert [f.result().status_code for f in held] == [200, 200]
        finally:
            release.set()
            service._render_iiif = render
        wait_for(lambda: service.iiif_pool.waiting == 0, 10, "the IIIF pool idle")


def test_an_iiif_answer_is_encoded_once(awkward_root):
    with make_client(awkward_root) as client:
        service = client.app.state.service
        calls = []
        render = service._render_iiif
        service._render_iiif = lambda *args: calls.append(args) or render(*args)
        first = client.get(f"{BASE}/100,100,300,300/150,/0/default.jpg")
        again = client.get(f"{BASE}/100,100,300,300/150,150/0/default.jpg")  # the same canonical request
        assert first.content == again.content and len(calls) == 1
        assert client.get(f"{BASE}/100,100,300,300/150,/0/gray.jpg").status_code == 200 and len(calls) == 2
        for _ in range(2):  # a large answer is not kept: it would evict many small ones (and keep a burst's memory)
            assert len(client.get(f"{BASE}/full/max/0/default.png").content) > 256 << 10
        assert len(calls) == 4


def test_the_allocator_takes_the_fixed_thresholds():
    assert malloc.keep_freed_until_trim()  # glibc (Debian): freed buffers stay for the next request until a trim
    malloc.trim()


def test_the_pool_asks_for_one_trim_once_it_has_been_idle_a_moment():
    pool = IiifPool(threads=1, max_queue=4)
    try:
        assert not pool.trim_due()  # nothing ran yet: nothing to hand back
        assert asyncio.run(pool.run(lambda: 7)) == 7
        wait_for(lambda: pool.waiting == 0, 10, "the pool idle")
        assert not pool.trim_due()  # just fell idle: the next answer may reuse the buffers
        time.sleep(IiifPool.TRIM_AFTER_SECONDS)
        assert pool.trim_due() and not pool.trim_due()  # once per idle spell
    finally:
        pool.close()
