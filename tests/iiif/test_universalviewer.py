"""The Universal Viewer (npm ``universalviewer``) in headless Chromium, served from another origin, opens the
dataset's Presentation 3.0 manifest by URL and loads its tiles through the IIIF Image API, as Mirador does
(test_mirador.py): the second of the two IIIF viewers libraries and museums deploy most."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.iiif.conftest import IDENTIFIER
from tests.iiif.viewers import assert_viewer_loads_tiles
from tests.processes import serve_in_thread
from tests.viewer.conftest import browser  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[2]
UV_DIST = REPO / "node_modules" / "universalviewer" / "dist"


@pytest.fixture
def uv_site(iiif_server) -> Iterator[str]:
    """The Universal Viewer's own page (``dist/uv.html``) on 127.0.0.6, another origin than the IIIF server,
    told the dataset's manifest in its URL as its embed code does."""
    from starlette.applications import Starlette
    from starlette.staticfiles import StaticFiles

    if not (UV_DIST / "uv.html").is_file():
        pytest.fail(f"{UV_DIST} is missing: run `make iiif-viewers` (npm ci)", pytrace=False)
    app = Starlette()
    app.mount("/", StaticFiles(directory=UV_DIST))
    with serve_in_thread(app, "127.0.0.6", "the Universal Viewer's server") as port:
        yield f"http://127.0.0.6:{port}/uv.html#?manifest={iiif_server.url}/iiif/3/{IDENTIFIER}/manifest.json"


def test_universal_viewer_on_another_origin_opens_the_manifest_and_loads_tiles(browser, iiif_server,  # noqa: F811
                                                                               uv_site):
    assert_viewer_loads_tiles(browser, iiif_server.url, uv_site, "the Universal Viewer")
