"""The render server's HTTP surface, in process (starlette TestClient): URLs, errors, caching headers."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from gigaformat.layout import DatasetDir
from tests.tiler.awkward_wall import make_awkward_wall
from tiler.app import build_app
from tiler.local_publish import publish_local
from tiler.settings import ServeSettings


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    base = tmp_path_factory.mktemp("app")
    make_awkward_wall(base / "src")
    publish_local(base / "src", DatasetDir(base / "node", "awkward"))
    settings = ServeSettings(root=base / "node", datasets=("awkward",), reload_seconds=0.1)
    with TestClient(build_app(settings)) as test_client:
        yield test_client


BAD_REQUESTS = [
    ("/tiles/awkward/0/0/0.gif", 400),
    ("/tiles/awkward/a/0/0.jpg", 400),
    ("/tiles/awkward/01/0/0.jpg", 400),
    ("/tiles/awkward/-1/0/0.jpg", 400),
    ("/tiles/awkward/1.5/0/0.jpg", 400),
    ("/tiles/awkward/99999999999/0/0.jpg", 400),
    ("/tiles/awkward/4/0/0.jpg", 404),
    ("/tiles/awkward/3/99/0.jpg", 404),
    ("/tiles/awkward/0/0/0.jpg?v=abc", 400),
    ("/tiles/nope/0/0/0.jpg", 404),
    ("/tiles/NOPE/0/0/0.jpg", 404),
    ("/tiles/awkward/0/0", 404),
    ("/tiles/awkward/info.json/x", 404),
    ("/tiles/" + "a" * 300 + "/0/0/0.jpg", 414),
    ("/tiles/awkward/..%2F..%2Fetc%2Fpasswd", 400),
    ("/tiles/awkward/%00/0/0.jpg", 400),
    ("/tiles/awkward_files/40/0_0.jpg", 404),
    ("/tiles/awkward_files/2/5_0.jpg", 404),
    ("/tiles/awkward_files/11/0_0.tif", 400),
]


@pytest.mark.parametrize(("path", "status"), BAD_REQUESTS)
def test_bad_input_gets_its_4xx_with_a_reason(client, path, status):
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.text.strip() and "Traceback" not in response.text


def test_datasets_listing(client):
    assert client.get("/tiles/datasets.json").json() == {"datasets": [{"name": "awkward", "generation": 1}]}


def test_info_describes_levels_and_versions(client):
    info = client.get("/tiles/awkward/info.json").json()
    assert (info["width"], info["height"], info["tile_size"], info["levels"]) == (1531, 1002, 256, 4)
    assert info["generation"] == 1
    assert np.array(info["versions"]["cells"]).shape == (info["versions"]["rows"], info["versions"]["cols"])


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp"])
def test_tiles_decode_as_256_squares(client, fmt):
    response = client.get(f"/tiles/awkward/3/1/1.{fmt}")
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (256, 256)


def test_versioned_url_is_immutable_others_short_and_a_generation_ahead_not_kept(client):
    version = int(client.get("/tiles/awkward/2/0/0.jpg").headers["X-Tile-Version"])
    generation = client.get("/tiles/awkward/info.json").json()["generation"]
    assert client.get(f"/tiles/awkward/2/0/0.jpg?v={version}").headers["Cache-Control"] == \
        "public, max-age=31536000, immutable"
    for other in ("?v=0", ""):
        assert client.get(f"/tiles/awkward/2/0/0.jpg{other}").headers["Cache-Control"] == "public, max-age=60"
    # a generation this node has not switched to (another node has, in a rolling switch): no cache keeps it
    ahead = client.get(f"/tiles/awkward/2/0/0.jpg?v={generation + 1}")
    assert ahead.headers["Cache-Control"] == "no-store" and ahead.headers["X-Tile-Version"] == str(version)


def test_if_none_match_gets_304(client):
    first = client.get("/tiles/awkward/1/0/0.png")
    etag = first.headers["ETag"]
    again = client.get("/tiles/awkward/1/0/0.png", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    assert client.get("/tiles/awkward/1/0/0.png", headers={"If-None-Match": '"other"'}).status_code == 200


def test_deepzoom_matches_tiles(client):
    root = ET.fromstring(client.get("/tiles/awkward.dzi").text)
    size = root.find("{http://schemas.microsoft.com/deepzoom/2008}Size")
    assert (size.get("Width"), size.get("Height")) == ("1531", "1002")
    # DeepZoom level 11 is the 1:1 level (2^11 >= 1531): its last column is cropped to the canvas.
    edge = Image.open(io.BytesIO(client.get("/tiles/awkward_files/11/5_3.png").content))
    assert edge.size == (1531 - 5 * 256, 1002 - 3 * 256)
    ours = np.asarray(Image.open(io.BytesIO(client.get("/tiles/awkward/3/5/3.png").content)))
    assert np.array_equal(np.asarray(edge), ours[:edge.size[1], :edge.size[0]])
    assert Image.open(io.BytesIO(client.get("/tiles/awkward_files/1/0_0.png").content)).size == (2, 1)
    assert Image.open(io.BytesIO(client.get("/tiles/awkward_files/0/0_0.png").content)).size == (1, 1)


def test_iiif_info_and_a_tile_aligned_request(client):
    info = client.get("/iiif/3/awkward/info.json").json()
    assert info["type"] == "ImageService3" and info["tiles"][0]["scaleFactors"] == [1, 2, 4, 8]
    response = client.get("/iiif/3/awkward/512,0,512,512/256,/0/default.png")
    assert response.status_code == 200
    iiif = np.asarray(Image.open(io.BytesIO(response.content)))
    tile = np.asarray(Image.open(io.BytesIO(client.get("/tiles/awkward/2/1/0.png").content)))
    assert np.array_equal(iiif, tile)
    gray = Image.open(io.BytesIO(client.get("/iiif/3/awkward/full/100,/90/gray.jpg").content))
    assert gray.mode == "L" and gray.size == (round(100 * 1002 / 1531), 100)


def test_health_ready_and_metrics(client):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["datasets"] == {"awkward": 1}
    client.get("/tiles/awkward/0/0/0.jpg")
    text = client.get("/metrics").text
    assert "gigatile_requests_total" in text and "gigatile_render_seconds" in text


def test_a_worker_serves_data_that_reached_its_disk_before_its_watch_loop_looked(tmp_path, monkeypatch):
    """Another worker on the same socket may have loaded it and said ready: the node is registered."""
    monkeypatch.setattr("tiler.app.UNLOADED_POLL_SECONDS", 3600)  # this worker's watch loop will not look
    settings = ServeSettings(root=tmp_path / "node", datasets=("awkward",), reload_seconds=3600)
    with TestClient(build_app(settings)) as client:
        assert client.get("/tiles/awkward/info.json").status_code == 503  # no data yet
        make_awkward_wall(tmp_path / "src")
        publish_local(tmp_path / "src", DatasetDir(tmp_path / "node", "awkward"))
        info = client.get("/tiles/awkward/info.json")
        assert info.status_code == 200 and info.json()["generation"] == 1
        assert client.get("/iiif/3/awkward/info.json").status_code == 200
        assert client.get("/readyz").status_code == 200


@pytest.fixture(scope="module")
def pyramid_client(tmp_path_factory):
    base = tmp_path_factory.mktemp("app-pyramid")
    make_awkward_wall(base / "src")
    publish_local(base / "src", DatasetDir(base / "node", "awkward"), store="pyramid")
    settings = ServeSettings(root=base / "node", datasets=("awkward",), reload_seconds=0.1)
    with TestClient(build_app(settings)) as test_client:
        yield test_client


def test_a_whole_deepzoom_tile_is_the_stored_tile_and_an_edge_tile_its_crop(pyramid_client):
    client = pyramid_client
    for dz, ours in (("11/1/1", "3/1/1"), ("10/1/0", "2/1/0")):  # the stored 1:1 level and the derived one
        level, col, row = dz.split("/")
        whole = client.get(f"/tiles/awkward_files/{level}/{col}_{row}.jpg")
        assert whole.status_code == 200 and whole.content == client.get(f"/tiles/awkward/{ours}.jpg").content, dz
    edge = Image.open(io.BytesIO(client.get("/tiles/awkward_files/11/5_3.jpg").content))
    assert edge.size == (1531 - 5 * 256, 1002 - 3 * 256)
