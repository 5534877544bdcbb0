"""``tiler serve`` as a process: it says where it listens, and on a root without data what to do about it."""

from __future__ import annotations

from pathlib import Path

import httpx

from gigaformat.layout import DatasetDir
from tests.processes import free_port, start_tiler_serve, wait_for
from tiler.generate import generate_wall
from tiler.local_publish import publish_local

HINT = "no data yet: run boxlink (or node-bootstrap)"


def test_an_empty_root_says_where_it_listens_and_that_boxlink_must_run(tmp_path: Path):
    root, port = tmp_path / "node", free_port()
    server = start_tiler_serve(root, "covers", "127.0.0.1", port, tmp_path / "serve.log", "--workers", "1")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: HINT in server.output(), 10, "the start-up lines")
        output = server.output()
        assert f"listening on {base}/" in output
        assert f"dataset 'covers': {HINT} to replicate it into {root}/data/covers/" in output

        info = httpx.get(f"{base}/tiles/covers/info.json")
        assert info.status_code == 503 and HINT in info.text and info.headers["retry-after"] == "1"
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503 and HINT in ready.json()["waiting"]["covers"]

        generate_wall(tmp_path / "src", 0.002)  # the data arrives (as boxlink would put it): served
        publish_local(tmp_path / "src", DatasetDir(root, "covers"))
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 30, "the dataset to load")
        assert httpx.get(f"{base}/tiles/covers/info.json").json()["generation"] == 1
    finally:
        server.stop()
