"""Mirador (npm ``mirador``) in headless Chromium, served from another origin, opens the dataset's Presentation 3.0
manifest by URL and loads its tiles through the IIIF Image API: CORS, the manifest and info.json as a real
IIIF viewer uses them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.iiif.conftest import IDENTIFIER
from tests.iiif.viewers import assert_viewer_loads_tiles
from tests.processes import serve_in_thread
from tests.viewer.conftest import browser  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[2]
MIRADOR = REPO / "node_modules" / "mirador" / "dist" / "mirador.min.js"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>mirador</title></head>
<body style="margin:0"><div id="mirador" style="position:absolute;inset:0"></div>
<script src="/mirador.min.js"></script>
<script>Mirador.viewer({id: "mirador", windows: [{manifestId: "MANIFEST"}]});</script></body></html>"""


@pytest.fixture
def mirador_site(iiif_server) -> Iterator[str]:
    """A page on 127.0.0.5 (another origin than the IIIF server) running Mirador on the dataset's manifest."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, HTMLResponse
    from starlette.routing import Route

    if not MIRADOR.is_file():
        pytest.fail(f"{MIRADOR} is missing: run `make iiif-viewers` (npm ci)", pytrace=False)
    manifest = f"{iiif_server.url}/iiif/3/{IDENTIFIER}/manifest.json"
    app = Starlette(routes=[Route("/", lambda request: HTMLResponse(PAGE.replace("MANIFEST", manifest))),
                            Route("/mirador.min.js", lambda request: FileResponse(MIRADOR))])
    with serve_in_thread(app, "127.0.0.5", "the Mirador page's server") as port:
        yield f"http://127.0.0.5:{port}/"


def test_mirador_on_another_origin_opens_the_manifest_and_loads_tiles(browser, iiif_server, mirador_site):  # noqa: F811
    assert_viewer_loads_tiles(browser, iiif_server.url, mirador_site, "Mirador")
