"""The viewer in real headless Chromium (Debian's ``chromium``, driven by Playwright) against a real ``tiler serve``.

Tiles load; three wheel zooms and a drag reach deeper levels with every tile answered 200/304 at the version
the viewer asked for; the canvas is not blank; deep links restore the view; a published diff shows up without
a reload, re-fetching only the tiles over changed cells; failing tiles are reported on the page.

``GIGATILE_SAVE_SCREENSHOT=docs/viewer.png`` also saves the zoomed screenshot there (relative to the repo),
``GIGATILE_VIEWER_TEST_GPX=0.5`` makes the wall bigger for a nicer picture. Without Chromium or Playwright the
tests are skipped, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from gigaformat.levels import Geometry
from tests.processes import serve_in_thread
from tests.viewer.conftest import ServedWall
from tests.viewer.pages import (
    MIN_STDDEV,
    SMALL_VIEWPORT,
    START_ZOOM,
    TILE_URL,
    ZOOM_ARRIVED,
    TileResponse,
    close_to,
    save_doc_picture,
    stddev,
)
from tiler.app import VIEWER_DIR
from tiler.local_publish import publish_local

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("browser")  # skip (or fail in CI) before building any wall


@pytest.fixture
def proxy_like_site(wall: ServedWall) -> Iterator[str]:
    """The viewer folder at ``/`` and ``/tiles/`` forwarded to the node, as the proxy serves them."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def forward(request: Request) -> Response:
        async with httpx.AsyncClient(base_url=wall.base) as client:
            upstream = await client.get(request.url.path, params=request.query_params)
        kept = ("content-type", "cache-control", "etag", "x-tile-version")
        return Response(upstream.content, upstream.status_code, {k: upstream.headers[k] for k in kept
                                                                  if k in upstream.headers})

    app = Starlette(routes=[Route("/tiles/{path:path}", forward),
                            Mount("/", StaticFiles(directory=VIEWER_DIR, html=True))])
    with serve_in_thread(app, "127.0.0.1", "the stand-in proxy") as port:
        yield f"http://127.0.0.1:{port}"


# --- a page with its network log -------------------------------------------------------------------------------


# --- the tests -------------------------------------------------------------------------------------------------


def test_wheel_zoom_and_drag_load_deeper_tiles_on_a_painted_canvas(wall: ServedWall, open_tab, tmp_path: Path):
    tab = open_tab(f"{wall.base}/viewer/")
    page = tab.page
    home = tab.settle()
    assert page.inner_text("#generation") == "generation 1"
    assert page.inner_text("#dataset-name") == "covers"
    home_level = tab.deepest()

    box = page.locator("#view").bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(*centre)
    for _ in range(3):  # OSD ignores wheel events closer than 50 ms: one notch at a time, as a hand turns it
        zoom = page.evaluate("window.gigatile.state().view.zoom")
        page.mouse.wheel(0, -240)
        page.wait_for_function(f"() => window.gigatile.state().view.zoom > {zoom} * 1.2 && {ZOOM_ARRIVED}")
    page.mouse.down()
    page.mouse.move(centre[0] - 300, centre[1] - 150, steps=12)
    page.mouse.up()
    zoomed = tab.settle()

    assert zoomed["view"]["zoom"] > 2.5 * home["view"]["zoom"]  # three steps of 1.4
    assert zoomed["view"]["x"] > home["view"]["x"] and zoomed["view"]["y"] > home["view"]["y"]  # dragged up-left
    assert tab.deepest() > home_level
    assert any(t.z == tab.deepest() and t.status == 200 for t in tab.tiles)
    tab.assert_tiles_ok()

    shot = tmp_path / "viewer.png"
    page.locator("#view").screenshot(path=str(shot))
    assert stddev(shot) > MIN_STDDEV, f"the canvas looks blank: {shot}"
    if target := os.environ.get("GIGATILE_SAVE_SCREENSHOT"):
        save_doc_picture(page.screenshot(), Path(target) if Path(target).is_absolute() else REPO / target)

    # the view went into the URL (throttled), and that URL opens the same view elsewhere
    page.wait_for_function("() => /^#x=\\d+&y=\\d+&zoom=[0-9.e-]+$/.test(location.hash)")
    page.wait_for_function("""async () => {
        const { formatView } = await import('./viewstate.js');
        return location.hash === formatView(window.gigatile.wall.currentView());
    }""")
    again = open_tab(page.url)
    assert close_to(again.settle()["view"], zoomed["view"])
    again.assert_tiles_ok()


def test_deep_link_and_keyboard(wall: ServedWall, open_tab):
    info = wall.info()
    target = {"x": round(info["width"] * 0.3), "y": round(info["height"] * 0.6), "zoom": 0.5}
    tab = open_tab(f"{wall.base}/viewer/#x={target['x']}&y={target['y']}&zoom=0.5")
    state = tab.settle()
    assert close_to(state["view"], target)
    assert tab.deepest() >= info["top_level"] - 1  # zoom 1/2 needs a level at least half of 1:1
    assert tab.page.url.endswith(f"#x={target['x']}&y={target['y']}&zoom=0.5")

    # editing the fragment moves the open view
    elsewhere = {"x": round(info["width"] * 0.7), "y": round(info["height"] * 0.4), "zoom": 1}
    tab.page.evaluate(f"location.hash = '#x={elsewhere['x']}&y={elsewhere['y']}&zoom=1'")
    tab.page.wait_for_function(f"() => window.gigatile.state().view.zoom > 0.999 && "
                               f"Math.abs(window.gigatile.state().view.x - {elsewhere['x']}) < 1")
    assert close_to(tab.settle()["view"], elsewhere)
    assert tab.deepest() == info["top_level"]

    # keys: "-" zooms out one step, then arrows pan (OSD pans only while not zooming)
    before = tab.settle()["view"]
    tab.page.keyboard.press("Minus")
    tab.page.wait_for_function(f"() => window.gigatile.state().view.zoom < {before['zoom'] * 0.999}")
    zoomed_out = tab.settle()["view"]
    tab.page.keyboard.press("ArrowRight")
    tab.page.wait_for_function(f"() => window.gigatile.state().view.x > {zoomed_out['x'] + 1}")
    after = tab.settle()["view"]
    assert abs(zoomed_out["zoom"] / before["zoom"] - 0.5) < 1e-3 and after["zoom"] == zoomed_out["zoom"]  # one step
    assert after["x"] > zoomed_out["x"] + 10 and after["y"] == zoomed_out["y"]
    tab.assert_tiles_ok()


WHOLE_WALL_SHOWN = """() => {
    const viewer = window.gigatile.viewer;
    const view = viewer.viewport.getBounds(true);
    const wall = viewer.world.getItemAt(0).getBounds(true);
    const e = 1e-6;
    return view.x <= wall.x + e && view.y <= wall.y + e && view.x + view.width >= wall.x + wall.width - e
        && view.y + view.height >= wall.y + wall.height - e;
}"""


def test_the_page_opens_where_covers_are_readable_and_keys_step_by_two(wall: ServedWall, open_tab):
    info = wall.info()
    tab = open_tab(f"{wall.base}/viewer/", viewport=SMALL_VIEWPORT)
    page = tab.page
    start = tab.settle()["view"]
    assert close_to(start, {"x": info["width"] / 2, "y": info["height"] / 2, "zoom": START_ZOOM})
    assert not page.evaluate(WHOLE_WALL_SHOWN)

    page.keyboard.press("0")  # the whole wall, one key away
    page.wait_for_function(WHOLE_WALL_SHOWN)
    assert tab.settle()["view"]["zoom"] < START_ZOOM
    page.keyboard.press("h")  # and back
    page.wait_for_function(f"() => Math.abs(window.gigatile.state().view.zoom / {START_ZOOM} - 1) < 1e-3")
    assert close_to(tab.settle()["view"], start)

    for key, zoom in (("+", 0.25), ("Equal", 0.5), ("Shift+W", 1.0), ("Minus", 0.5), ("1", 1.0)):
        page.keyboard.press(key)
        page.wait_for_function(f"() => Math.abs(window.gigatile.state().view.zoom / {zoom} - 1) < 1e-3 "
                               f"&& {ZOOM_ARRIVED}")
    assert tab.deepest() == info["top_level"]
    tab.assert_tiles_ok()


def _replace_covers_in_first_cell(src: Path) -> None:
    """Give every item whose top-left corner lies in the first 4096-px cell the image of the last item."""
    rows = list(csv.reader((src / "items.csv").open(newline="")))
    header, items = rows[0], rows[1:]
    other = items[-1][5]
    for item in items:
        if int(item[1]) < 4096 and int(item[2]) < 4096 and item[5] != other:
            item[5] = other
    with (src / "items.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *items])


def test_a_published_diff_shows_up_without_reload(changing_wall: ServedWall, open_tab, tmp_path: Path):
    tab = open_tab(f"{changing_wall.base}/viewer/?poll=0.5")
    page = tab.page
    tab.settle()
    page.evaluate("window.stillTheSamePage = true")
    page.locator("#view").screenshot(path=str(tmp_path / "before.png"))
    shown_before = [t for t in tab.tiles if t.z == tab.deepest()]
    mark = len(tab.tiles)

    _replace_covers_in_first_cell(changing_wall.src)
    assert publish_local(changing_wall.src, changing_wall.folder) == 2
    page.wait_for_function("() => document.getElementById('generation').dataset.generation === '2'",
                           timeout=15000)
    tab.settle()
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.evaluate("window.gigatile.viewer.navigator.world.getItemCount()") == 1  # the mini-map follows
    assert page.inner_text("#generation") == "generation 2"

    info = changing_wall.info()
    geometry = Geometry(info["width"], info["height"])
    changed = {(cx, cy) for cy, row in enumerate(info["versions"]["cells"]) for cx, gen in enumerate(row) if gen == 2}
    assert changed and len(changed) < info["versions"]["cols"] * info["versions"]["rows"]

    def over_changed(t: TileResponse) -> bool:
        cx0, cy0, cx1, cy1 = geometry.tile_cells(t.z, t.x, t.y)
        return any(cx0 <= cx < cx1 and cy0 <= cy < cy1 for cx, cy in changed)

    refetched = tab.tiles[mark:]
    assert refetched, "no tile was fetched after the diff"
    assert all(t.v == 2 and over_changed(t) for t in refetched), refetched  # unchanged tiles come from cache
    expected = {(t.z, t.x, t.y) for t in shown_before if over_changed(t)}
    assert expected and expected <= {(t.z, t.x, t.y) for t in refetched}
    tab.assert_tiles_ok()

    page.locator("#view").screenshot(path=str(tmp_path / "after.png"))
    before = np.asarray(Image.open(tmp_path / "before.png").convert("RGB"), dtype=np.int16)
    after = np.asarray(Image.open(tmp_path / "after.png").convert("RGB"), dtype=np.int16)
    assert np.abs(after - before).mean() > 0.5, "the screen did not change"


def test_failing_tiles_are_reported_and_retried(wall: ServedWall, open_tab):
    failing = {"on": True}

    def refuse_deep_tiles(route: Any) -> None:
        m = TILE_URL.search(route.request.url)
        if failing["on"] and int(m["z"]) >= 2:
            route.fulfill(status=503, body="render queue is full; retry shortly\n")
        else:
            route.continue_()

    tab = open_tab(f"{wall.base}/viewer/",
                   before=lambda page: page.route("**/tiles/covers/*/*/*.jpg*", refuse_deep_tiles))
    page = tab.page
    page.wait_for_selector("#problems:not([hidden])", timeout=15000)
    text = page.inner_text("#problems-text")
    assert "failed to load" in text and "HTTP 503 render queue is full" in text, text

    failing["on"] = False
    page.click("#problems-retry")
    tab.settle()
    assert page.is_hidden("#problems")
    assert page.evaluate("window.gigatile.failures()") == 0


def test_unknown_dataset_and_the_dataset_picker(wall: ServedWall, open_tab):
    missing = open_tab(f"{wall.base}/viewer/?dataset=nope")
    missing.page.wait_for_selector("#fatal:not([hidden])")
    assert "HTTP 404" in missing.page.inner_text("#fatal")

    listing = '{"datasets": [{"name": "covers", "generation": 1}, {"name": "nope", "generation": 3}]}'
    tab = open_tab(f"{wall.base}/viewer/", before=lambda page: page.route(
        "**/tiles/datasets.json", lambda route: route.fulfill(status=200, body=listing,
                                                              content_type="application/json")))
    tab.page.wait_for_selector("label.picker:not([hidden])")
    assert tab.page.eval_on_selector_all("#dataset option", "options => options.map(o => o.value)") == [
        "covers", "nope"]
    tab.settle()
    with tab.page.expect_navigation():
        tab.page.select_option("#dataset", "nope")
    assert tab.page.url.endswith("/viewer/?dataset=nope")

    without_listing = open_tab(f"{wall.base}/viewer/", before=lambda page: page.route(
        "**/tiles/datasets.json", lambda route: route.fulfill(status=404, body="not found\n")))
    without_listing.settle()
    assert without_listing.page.is_hidden("label.picker")


def test_the_viewer_works_at_the_root_of_a_proxy(proxy_like_site: str, wall: ServedWall, open_tab):
    info = wall.info()
    x, y = round(info["width"] / 2), round(info["height"] / 2)
    tab = open_tab(f"{proxy_like_site}/#x={x}&y={y}&zoom=0.25")
    assert close_to(tab.settle()["view"], {"x": x, "y": y, "zoom": 0.25})
    assert tab.page.inner_text("#generation") == "generation 1"
    tab.assert_tiles_ok()
    shot = tab.page.locator("#view").screenshot()
    assert float(np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=np.float32).std()) > MIN_STDDEV
