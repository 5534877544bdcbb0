"""Fixtures of the browser tests: one headless Chromium per module, tabs in fresh contexts, and a small covers
wall (with its metadata: title, author, category, url) behind a real ``tiler serve``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gigaformat.layout import DatasetDir
from tests.processes import free_port, start_tiler_serve
from tests.viewer.pages import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, Tab
from tiler.app import VIEWER_DIR
from tiler.generate import generate_wall
from tiler.local_publish import publish_local

WALL_GPX = float(os.environ.get("GIGATILE_VIEWER_TEST_GPX", "0.05"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium; Playwright gives it a fresh temporary profile (user data dir).

    Missing Chromium, Playwright or the vendored OpenSeadragon skips the tests, or fails them under CI=true.
    """
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "Playwright's Python package is not installed (pip install playwright)"
    if missing is None and not CHROMIUM.exists():
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if missing is None and not (VIEWER_DIR / "vendor/openseadragon/openseadragon.min.js").exists():
        missing = f"OpenSeadragon is not installed in {VIEWER_DIR / 'vendor'} (make viewer)"
    if missing:
        if in_ci():
            pytest.fail(f"{missing}; under CI=true the browser tests must run", pytrace=False)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def open_tab(browser: Any) -> Iterator[Any]:
    """``open_tab(url)`` opens a page in a fresh browser context (own cache) and logs its network."""
    contexts = []

    def open_url(url: str, before: Any = None, viewport: dict | None = None) -> Tab:
        context = browser.new_context(viewport=viewport or VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        tab = Tab(page)
        page.on("response", tab.on_response)
        page.on("requestfailed", lambda request: tab.bad.append(f"failed {request.url}: {request.failure}"))
        page.on("pageerror", lambda error: tab.bad.append(f"page error: {error}"))
        if before is not None:
            before(page)
        page.goto(url)
        return tab

    yield open_url
    for context in contexts:
        context.close()


# --- a small covers wall behind a real tiler serve ------------------------------------------------------------


@dataclass
class ServedWall:
    src: Path
    folder: DatasetDir
    base: str

    def info(self) -> dict:
        return httpx.get(f"{self.base}/tiles/covers/info.json").json()


def _serve_wall(tmp: Path, gigapixels: float) -> Iterator[ServedWall]:
    src, root = tmp / "src", tmp / "node"
    generate_wall(src, gigapixels)
    folder = DatasetDir(root, "covers")
    publish_local(src, folder)
    port = free_port()
    server = start_tiler_serve(root, "covers", "127.0.0.1", port, tmp / "serve.log", "--workers", "1")
    try:
        yield ServedWall(src, folder, f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def wall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedWall]:
    yield from _serve_wall(tmp_path_factory.mktemp("wall"), WALL_GPX)


@pytest.fixture
def changing_wall(tmp_path: Path) -> Iterator[ServedWall]:
    """A wall of its own, for a test that publishes a diff to it."""
    yield from _serve_wall(tmp_path, 0.05)
