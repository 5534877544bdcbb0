"""The node metrics the fleet's alerts and autoscaling read: render queue, its limit, free disk."""

from __future__ import annotations

import shutil

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gigaformat.layout import DatasetDir
from tests.processes import wait_for
from tests.tiler.awkward_wall import make_awkward_wall
from tiler.app import build_app
from tiler.local_publish import publish_local
from tiler.settings import ServeSettings


def figures(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def test_metrics_show_the_render_queue_its_limit_and_free_disk(tmp_path):
    make_awkward_wall(tmp_path / "src")
    publish_local(tmp_path / "src", DatasetDir(tmp_path / "node", "awkward"))
    settings = ServeSettings(root=tmp_path / "node", datasets=("awkward",), reload_seconds=0.1, max_queue=7)
    with TestClient(build_app(settings)) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200, 30, "ready")
        assert client.get("/tiles/awkward/3/0/0.jpg").status_code == 200  # one render, finished
        seen = figures(client.get("/metrics").text)
    assert seen["gigatile_render_queue"] == 0
    assert seen["gigatile_render_queue_limit"] == 7
    usage = shutil.disk_usage(tmp_path)
    assert seen["gigatile_disk_size_bytes"] == usage.total
    assert abs(seen["gigatile_disk_free_bytes"] - usage.free) < 256 << 20
