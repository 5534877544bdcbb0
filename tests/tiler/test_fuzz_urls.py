"""No /tiles/ URL gets a 5xx (tests/iiif/test_fuzz.py does /iiif/, tests/proxy/test_fuzz.py tile-proxy):
hypothesis draws tile, DeepZoom, info, items and search URLs from their grammar and near misses of it,
against the awkward wall in process."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from gigaformat.layout import DatasetDir
from tests.processes import wait_for
from tests.tiler.awkward_wall import make_awkward_wall
from tiler.app import build_app
from tiler.local_publish import publish_local
from tiler.settings import ServeSettings

NUMBER = st.one_of(st.integers(-2, 40).map(str), st.integers(0, 10 ** 20).map(str),
                   st.sampled_from(["", "00", "1.5", "1e3", "-0", "0x1", "٣", " 1", "+1", "NaN"]))
DATASET = st.sampled_from(["awkward", "covers", "nope", "AWKWARD", "awkward_files", "..", "a" * 70, "awk%2Fward", ""])
FORMAT = st.sampled_from(["jpg", "png", "webp", "gif", "", "JPG", "jpg.png", "jpeg"])
NOISE = st.text(st.characters(codec="utf-8", exclude_characters="?#"), max_size=16)
QUERY_KEY = st.sampled_from(["v", "x", "y", "bbox", "q", "limit", "offset", "title", "author", "", "v[]"])
QUERY_VALUE = st.one_of(NUMBER, NOISE, st.tuples(NUMBER, NUMBER, NUMBER, NUMBER).map(",".join))


@st.composite
def tile_urls(draw) -> str:
    ds = draw(DATASET)
    shape = draw(st.sampled_from(["tile", "tile", "dzi", "deepzoom", "info", "at", "item", "bbox", "search",
                                  "noise"]))
    path = {
        "tile": lambda: f"/tiles/{ds}/{draw(NUMBER)}/{draw(NUMBER)}/{draw(NUMBER)}.{draw(FORMAT)}",
        "dzi": lambda: f"/tiles/{ds}.dzi",
        "deepzoom": lambda: f"/tiles/{ds}_files/{draw(NUMBER)}/{draw(NUMBER)}_{draw(NUMBER)}.{draw(FORMAT)}",
        "info": lambda: f"/tiles/{ds}/info.json",
        "at": lambda: f"/tiles/{ds}/items/at",
        "item": lambda: f"/tiles/{ds}/items/{draw(NOISE)}",
        "bbox": lambda: f"/tiles/{ds}/items",
        "search": lambda: f"/tiles/{ds}/search",
        "noise": lambda: f"/tiles/{ds}/" + "/".join(draw(st.lists(st.one_of(NUMBER, NOISE), max_size=5))),
    }[shape]()
    pairs = draw(st.lists(st.tuples(QUERY_KEY, QUERY_VALUE), max_size=4))
    query = urllib.parse.urlencode(pairs)
    return urllib.parse.quote(path, safe="/:,._-") + (f"?{query}" if query else "")


@pytest.fixture(scope="module")
def awkward_node(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz-urls")
    make_awkward_wall(base / "src")
    publish_local(base / "src", DatasetDir(base / "node", "awkward"))
    return base / "node"


def test_no_tiles_url_gets_a_5xx(awkward_node):
    config = ServeSettings(root=awkward_node, datasets=("awkward",), reload_seconds=0.1)
    with TestClient(build_app(config)) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200, 30, "the dataset loaded")

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(tile_urls())
        def check(url: str) -> None:
            response = client.get(url)
            assert response.status_code < 500, (url, response.status_code, response.text)
            if response.status_code >= 400:
                assert response.text.strip() and "Traceback" not in response.text

        check()
