"""Pages in Debian's headless Chromium (driven by Playwright) for the browser tests: a tab that logs every tile
answer, and waiting until the viewer has settled."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
SMALL_VIEWPORT = {"width": 640, "height": 400}  # the test wall does not fit it at the start zoom
START_ZOOM = 0.125  # tiler/viewer/viewstate.js
TILE_URL = re.compile(r"/tiles/(?P<ds>[a-z0-9_-]+)/(?P<z>\d+)/(?P<x>\d+)/(?P<y>\d+)\.(?P<fmt>jpg|png|webp)"
                      r"(\?v=(?P<v>\d+))?$")
# loaded, not animating, and the same view as at the previous poll (keyboard moves are not animations)
SETTLED = """() => {
    const s = window.gigatile && window.gigatile.state();
    const key = s && JSON.stringify(s.view);
    const steady = key === window.settledViewKey;
    window.settledViewKey = key;
    return Boolean(s && s.fullyLoaded && !s.animating && !s.swapping && s.images === 1 && steady);
}"""
ITEMS_URL = re.compile(r"/tiles/(?P<ds>[a-z0-9_-]+)/(?P<what>items/at|items/[^/?]+|items|search)\?")
ZOOM_ARRIVED = ("Math.abs(window.gigatile.viewer.viewport.getZoom(true) / window.gigatile.viewer.viewport.getZoom()"
                " - 1) < 1e-3")
MIN_STDDEV = 20.0  # grey levels; a blank or single-colour canvas is near 0, a wall of covers about 50


@dataclass(frozen=True)
class TileResponse:
    z: int
    x: int
    y: int
    v: int | None
    status: int
    tile_version: str | None  # the server's X-Tile-Version
    cache_control: str | None


@dataclass
class Tab:
    page: Any
    tiles: list[TileResponse] = field(default_factory=list)
    items: list[tuple[str, int]] = field(default_factory=list)  # (URL, status) of each items and search answer
    bad: list[str] = field(default_factory=list)  # non-tile responses >= 400, failed requests, page errors

    def on_response(self, response: Any) -> None:
        if m := TILE_URL.search(response.url):
            headers = response.headers
            self.tiles.append(TileResponse(int(m["z"]), int(m["x"]), int(m["y"]), m["v"] and int(m["v"]),
                                           response.status, headers.get("x-tile-version"),
                                           headers.get("cache-control")))
            return
        if m := ITEMS_URL.search(response.url):
            self.items.append((response.url, response.status))
            if m["what"] == "items/at" and response.status == 404:
                return  # the answer for the background (the pointer rests between books)
        if response.status >= 400:
            self.bad.append(f"{response.status} {response.url}")

    def settle(self, timeout_ms: float = 30000) -> dict:
        """Wait until every tile on screen is loaded and nothing moves; return the viewer's state."""
        self.page.evaluate("window.settledViewKey = null")
        try:
            self.page.wait_for_function(SETTLED, timeout=timeout_ms, polling=200)
        except Exception as e:
            state = self.page.evaluate("window.gigatile && window.gigatile.state()")
            raise AssertionError(f"the viewer did not settle in {timeout_ms / 1000:.0f} s: {state}") from e
        return self.page.evaluate("window.gigatile.state()")

    def hit_tests(self) -> list[tuple[str, int]]:
        return [(url, status) for url, status in self.items if "/items/at?" in url]

    def deepest(self, tiles: list[TileResponse] | None = None) -> int:
        return max(t.z for t in (self.tiles if tiles is None else tiles))

    def assert_tiles_ok(self) -> None:
        """Every tile answered 200/304 at the version the viewer asked for, so cacheable for a year."""
        assert self.tiles, "no tile was requested"
        wrong = [t for t in self.tiles if t.status not in (200, 304) or t.v is None or str(t.v) != t.tile_version
                 or "immutable" not in (t.cache_control or "")]
        assert wrong == [], f"{len(wrong)} bad tile responses, e.g. {wrong[:3]}"
        assert self.bad == []


def stddev(png: Path) -> float:
    return float(np.asarray(Image.open(png).convert("L"), dtype=np.float32).std())


def save_doc_picture(png: bytes, path: Path) -> None:
    """The whole page as a 256-colour PNG: the same picture to the eye at a quarter of the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)


def close_to(view: dict, expected: dict, pixels: float = 1.0) -> bool:
    return (abs(view["x"] - expected["x"]) <= pixels and abs(view["y"] - expected["y"]) <= pixels
            and abs(view["zoom"] / expected["zoom"] - 1) < 1e-3)




# the canvas rectangle [x, y, w, h] on screen (page CSS px), and whether the view shows it whole
SCREEN_BOX = """([x, y, w, h]) => {
    const viewer = window.gigatile.viewer;
    const image = viewer.world.getItemAt(0);
    const page = viewer.canvas.getBoundingClientRect();
    const a = image.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
    const b = image.imageToViewerElementCoordinates(new OpenSeadragon.Point(x + w, y + h));
    return {x: page.left + a.x, y: page.top + a.y, width: b.x - a.x, height: b.y - a.y};
}"""
IN_VIEW = """([x, y, w, h]) => {
    const viewer = window.gigatile.viewer;
    const view = viewer.world.getItemAt(0).viewportToImageRectangle(viewer.viewport.getBounds(true));
    return view.x <= x && view.y <= y && x + w <= view.x + view.width && y + h <= view.y + view.height;
}"""


def item_box(item: dict) -> list[int]:
    return [int(item["x"]), int(item["y"]), int(item["width"]), int(item["height"])]


def screen_centre(page: Any, item: dict) -> tuple[float, float]:
    """Where on the page the centre of `item` (its x, y, width, height on the canvas) is drawn."""
    box = page.evaluate(SCREEN_BOX, item_box(item))
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
