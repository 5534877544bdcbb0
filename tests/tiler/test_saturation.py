"""A saturated render pool: beyond ``--max-queue`` waiting a tile gets 503 ``Retry-After: 1``; ``/healthz`` and
``/readyz`` answer at once meanwhile (they never wait behind renders); the held renders then finish."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from starlette.testclient import TestClient

from gigaformat.layout import DatasetDir
from tests.processes import wait_for
from tests.tiler.awkward_wall import make_awkward_wall
from tiler.app import build_app
from tiler.local_publish import publish_local
from tiler.settings import ServeSettings


def test_a_full_render_queue_is_503_and_health_still_answers(tmp_path):
    make_awkward_wall(tmp_path / "src")
    publish_local(tmp_path / "src", DatasetDir(tmp_path / "node", "awkward"))
    config = ServeSettings(root=tmp_path / "node", datasets=("awkward",), reload_seconds=0.05, render_threads=1,
                           max_queue=2)
    with TestClient(build_app(config)) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200, 30, "the dataset loaded")
        service = client.app.state.service
        release = threading.Event()
        render = service._render

        def held(*args):
            release.wait(30)
            return render(*args)

        service._render = held
        try:
            with ThreadPoolExecutor(2) as pool:
                waiting = [pool.submit(client.get, f"/tiles/awkward/3/{x}/1.png") for x in (0, 1)]
                wait_for(lambda: service.pool.waiting == 2, 10, "two renders in the pool")
                busy = client.get("/tiles/awkward/3/2/1.png")
                assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
                for _ in range(10):
                    assert client.get("/healthz").status_code == 200
                assert client.get("/readyz").status_code == 200
                release.set()
                assert [f.result(30).status_code for f in waiting] == [200, 200]
        finally:
            release.set()
            service._render = render
        assert client.get("/tiles/awkward/3/2/1.png").status_code == 200
