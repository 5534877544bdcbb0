"""What the IIIF viewer tests share: a viewer's page opened in headless Chromium must fetch the manifest and
info.json and load tiles through the Image API from another origin, with no CORS error."""

from __future__ import annotations

import re

from tests.iiif.conftest import IDENTIFIER
from tests.processes import wait_for
from tests.viewer.pages import VIEWPORT

IMAGE_URL = re.compile(rf"/iiif/3/{IDENTIFIER}/(?P<region>[^/]+)/(?P<size>[^/]+)/0/default\.jpg$")


def assert_viewer_loads_tiles(browser, iiif_url: str, page_url: str, viewer: str) -> None:
    """Open ``page_url``; at least two IIIF tiles from ``iiif_url`` must load, every one of them 200."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    seen: dict[str, int] = {}
    images: list[tuple[str, int]] = []
    problems: list[str] = []

    def on_response(response) -> None:
        seen[response.url] = response.status
        if IMAGE_URL.search(response.url.split("?")[0]) and response.url.startswith(iiif_url):
            images.append((response.url, response.status))

    page.on("response", on_response)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed {r.url}: {r.failure}"))
    try:
        page.goto(page_url)
        wait_for(lambda: (page.wait_for_timeout(100) or True) and len([s for _, s in images if s == 200]) >= 2, 60,
                 f"{viewer} to load IIIF tiles (seen: {sorted(seen)[-20:]}, problems: {problems[:5]})")
        assert seen.get(f"{iiif_url}/iiif/3/{IDENTIFIER}/manifest.json") == 200
        assert seen.get(f"{iiif_url}/iiif/3/{IDENTIFIER}/info.json") == 200
        assert not [p for p in problems if "CORS" in p or "blocked" in p], problems
        assert all(status == 200 for _, status in images), images
    finally:
        context.close()
