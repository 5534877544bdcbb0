"""A new verified generation is switched in while serving, with no failed request."""

from __future__ import annotations

import csv
import threading

import httpx

from gigaformat.layout import DatasetDir
from tests.processes import free_port, start_tiler_serve, wait_for
from tests.tiler.awkward_wall import make_awkward_wall
from tiler.local_publish import publish_local


def _move_first_item(src) -> None:
    rows = list(csv.reader((src / "items.csv").open()))
    rows[3][1] = str(int(rows[3][1]) + 64)  # item2 (the big gradient) moves right
    with (src / "items.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_generation_switch_under_load_fails_no_request(tmp_path):
    src, root = tmp_path / "src", tmp_path / "node"
    make_awkward_wall(src)
    folder = DatasetDir(root, "awkward")
    publish_local(src, folder)
    port = free_port()
    server = start_tiler_serve(root, "awkward", "127.0.0.1", port, tmp_path / "serve.log", "--workers", "2",
                               env={"GIGATILE_LOG_LEVEL": "INFO"})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 30, "readyz")
        before = httpx.get(f"{base}/tiles/awkward/3/3/2.png").content
        failures, done, stop, lock = [], [0], threading.Event(), threading.Lock()

        def hammer() -> None:
            with httpx.Client(base_url=base, timeout=10) as client:
                n = 0
                while not stop.is_set() and n < 3000:
                    z = n % 4
                    path = f"/tiles/awkward/{z}/0/0.jpg" if z < 3 else f"/tiles/awkward/3/{n % 6}/{n % 4}.jpg"
                    response = client.get(path, headers={"Cache-Control": "no-cache"})
                    if response.status_code != 200:
                        failures.append((path, response.status_code, response.text))
                    n += 1
                    with lock:
                        done[0] += 1

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        wait_for(lambda: done[0] > 200, 30, "load before the switch")
        _move_first_item(src)
        assert publish_local(src, folder) == 2
        wait_for(lambda: httpx.get(f"{base}/tiles/awkward/info.json").json()["generation"] == 2, 20,
                 "generation 2 served")
        after_switch = done[0]
        wait_for(lambda: done[0] > after_switch + 200, 30, "load after the switch")
        stop.set()
        for thread in threads:
            thread.join(30)
        assert failures == []
        after = httpx.get(f"{base}/tiles/awkward/3/3/2.png").content
        assert after != before
        info = httpx.get(f"{base}/tiles/awkward/info.json").json()
        cells = info["versions"]["cells"]
        assert cells[0][0] == 2 and min(min(row) for row in cells) >= 1
        switched = [line for line in server.output().splitlines() if "serving dataset=awkward generation=2" in line]
        assert len({line.split("worker=")[1].split()[0] for line in switched}) == 2  # both workers log it
    finally:
        server.stop()
