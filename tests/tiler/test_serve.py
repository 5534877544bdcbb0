"""``tiler serve`` as a process: it says where it listens, and on a root without data what to do about it."""

from __future__ import annotations

import os
import signal
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


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")  # a zombie is gone too
    except OSError:
        return True


def test_forked_workers_are_forked_again_when_one_dies_and_all_end_with_the_server(tmp_path: Path):
    root, port = tmp_path / "node", free_port()
    generate_wall(tmp_path / "src", 0.002)
    publish_local(tmp_path / "src", DatasetDir(root, "covers"))
    server = start_tiler_serve(root, "covers", "127.0.0.1", port, tmp_path / "serve.log", "--workers", "2")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: len(_children(server.pid)) == 2, 10, "two workers")
        first = _children(server.pid)
        killed = min(first)
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: len(_children(server.pid)) == 2 and killed not in _children(server.pid), 15,
                 "a worker forked in place of the killed one")
        wait_for(lambda: all(httpx.get(f"{base}/readyz").status_code == 200 for _ in range(6)), 30,
                 "both workers ready")
        metrics = httpx.get(f"{base}/metrics").text  # the killed worker's gauges are gone: two workers' limits
        limit = next(line for line in metrics.splitlines() if line.startswith("gigatile_render_queue_limit "))
        assert float(limit.split()[1]) == 2 * 64, limit  # --max-queue's default, per worker
        workers = _children(server.pid)
        os.kill(server.pid, signal.SIGTERM)  # the parent alone, as node-bootstrap's supervisor does
        server.popen.wait(20)
        assert server.popen.returncode == 0
        assert all(_gone(pid) for pid in workers), "a worker outlived the server"
    finally:
        server.stop()
