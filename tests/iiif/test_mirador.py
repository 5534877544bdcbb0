"""Mirador (npm ``mirador``) in headless Chromium, served from another origin, opens the dataset's Presentation 3.0
manifest by URL and loads its tiles through the IIIF Image API: CORS, the manifest and info.json as a real
IIIF viewer uses them."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.iiif.conftest import IDENTIFIER
from tests.processes import free_port, wait_for
from tests.viewer.conftest import browser  # noqa: F401 (fixture)
from tests.viewer.pages import VIEWPORT

REPO = Path(__file__).resolve().parents[2]
MIRADOR = REPO / "node_modules" / "mirador" / "dist" / "mirador.min.js"
IMAGE_URL = re.compile(rf"/iiif/3/{IDENTIFIER}/(?P<region>[^/]+)/(?P<size>[^/]+)/0/default\.jpg$")
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>mirador</title></head>
<body style="margin:0"><div id="mirador" style="position:absolute;inset:0"></div>
<script src="/mirador.min.js"></script>
<script>Mirador.viewer({id: "mirador", windows: [{manifestId: "MANIFEST"}]});</script></body></html>"""


@pytest.fixture
def mirador_site(iiif_server) -> Iterator[str]:
    """A page on 127.0.0.5 (another origin than the IIIF server) running Mirador on the dataset's manifest."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, HTMLResponse
    from starlette.routing import Route

    if not MIRADOR.is_file():
        pytest.fail(f"{MIRADOR} is missing: run `make iiif-viewers` (npm ci)", pytrace=False)
    manifest = f"{iiif_server.url}/iiif/3/{IDENTIFIER}/manifest.json"
    app = Starlette(routes=[Route("/", lambda request: HTMLResponse(PAGE.replace("MANIFEST", manifest))),
                            Route("/mirador.min.js", lambda request: FileResponse(MIRADOR))])
    port = free_port("127.0.0.5")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.5", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "the Mirador page's server")
        yield f"http://127.0.0.5:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)


def test_mirador_on_another_origin_opens_the_manifest_and_loads_tiles(browser, iiif_server, mirador_site):  # noqa: F811
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    seen: dict[str, int] = {}
    images: list[tuple[str, int]] = []
    problems: list[str] = []

    def on_response(response) -> None:
        seen[response.url] = response.status
        if IMAGE_URL.search(response.url.split("?")[0]) and response.url.startswith(iiif_server.url):
            images.append((response.url, response.status))

    page.on("response", on_response)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed {r.url}: {r.failure}"))
    try:
        page.goto(mirador_site)
        wait_for(lambda: (page.wait_for_timeout(100) or True) and len([s for _, s in images if s == 200]) >= 2, 60,
                 f"Mirador to load IIIF tiles (seen: {sorted(seen)[:20]}, problems: {problems[:5]})")
        manifest = f"{iiif_server.url}/iiif/3/{IDENTIFIER}/manifest.json"
        assert seen.get(manifest) == 200 and seen.get(f"{iiif_server.url}/iiif/3/{IDENTIFIER}/info.json") == 200
        assert not [p for p in problems if "CORS" in p or "blocked" in p], problems
        assert all(status == 200 for _, status in images), images
    finally:
        context.close()
