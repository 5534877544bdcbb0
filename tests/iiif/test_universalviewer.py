"""The Universal Viewer (npm ``universalviewer``) in headless Chromium, served from another origin, opens the
dataset's Presentation 3.0 manifest by URL and loads its tiles through the IIIF Image API, as Mirador does
(test_mirador.py): the second of the two IIIF viewers libraries and museums deploy most."""

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
UV_DIST = REPO / "node_modules" / "universalviewer" / "dist"
IMAGE_URL = re.compile(rf"/iiif/3/{IDENTIFIER}/(?P<region>[^/]+)/(?P<size>[^/]+)/0/default\.jpg$")


@pytest.fixture
def uv_site(iiif_server) -> Iterator[str]:
    """The Universal Viewer's own page (``dist/uv.html``) on 127.0.0.6, another origin than the IIIF server,
    told the dataset's manifest in its URL as its embed code does."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.staticfiles import StaticFiles

    if not (UV_DIST / "uv.html").is_file():
        pytest.fail(f"{UV_DIST} is missing: run `make iiif-viewers` (npm ci)", pytrace=False)
    app = Starlette()
    app.mount("/", StaticFiles(directory=UV_DIST))
    port = free_port("127.0.0.6")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.6", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "the Universal Viewer's server")
        yield f"http://127.0.0.6:{port}/uv.html#?manifest={iiif_server.url}/iiif/3/{IDENTIFIER}/manifest.json"
    finally:
        server.should_exit = True
        thread.join(10)


def test_universal_viewer_on_another_origin_opens_the_manifest_and_loads_tiles(browser, iiif_server,  # noqa: F811
                                                                               uv_site):
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
        page.goto(uv_site)
        wait_for(lambda: (page.wait_for_timeout(100) or True) and len([s for _, s in images if s == 200]) >= 2, 60,
                 f"the Universal Viewer to load IIIF tiles (seen: {sorted(seen)[-20:]}, problems: {problems[:5]})")
        manifest = f"{iiif_server.url}/iiif/3/{IDENTIFIER}/manifest.json"
        assert seen.get(manifest) == 200 and seen.get(f"{iiif_server.url}/iiif/3/{IDENTIFIER}/info.json") == 200
        assert not [p for p in problems if "CORS" in p or "blocked" in p], problems
        assert all(status == 200 for _, status in images), images
    finally:
        context.close()
