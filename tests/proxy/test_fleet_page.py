"""The fleet page (tiler/viewer/fleet.html, served by tile-proxy) in real headless Chromium: one row per
node with its health, requests/s, p99, cache hit ratio and generation drawn as small plots; a node killed
turns unhealthy on the page."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.processes import wait_for
from tests.proxy.conftest import ADDRESSES, tile_paths

A, B = ADDRESSES
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
FIGURES = ("rps", "p99_ms", "cache_hit_ratio", "generation")


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: make test installs it (make browser)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 600})
        finally:
            browser.close()


def cells(page, node: str) -> dict[str, dict]:
    """Per figure of ``node``'s row: the latest value shown and how many points its plot has."""
    return page.evaluate("""(node) => {
        const row = document.querySelector(`tr[data-node="${node}"]`);
        if (!row) return {};
        const out = {state: {text: row.querySelector(".state").textContent}};
        for (const cell of row.querySelectorAll("td.plot")) {
            const line = cell.querySelector("polyline");
            out[cell.dataset.figure] = {text: cell.querySelector("span").textContent,
                                        points: line ? line.getAttribute("points").split(" ").length : 0};
        }
        return out;
    }""", node)


def test_the_fleet_page_plots_every_node_and_shows_a_dead_one(nodes, proxies, page, tmp_path):
    a, b = nodes.start(A), nodes.start(B)
    proxy = proxies.start("--fleet-seconds", "0.5")
    proxy.wait_live({a.id, b.id})
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        for round_ in range(3):  # misses spread over both nodes, then hits
            for path in tile_paths(60, versioned=False) if round_ == 0 else tile_paths(60):
                assert client.get(path).status_code == 200
    page.goto(proxy.url + "/fleet.html")
    wait_for(lambda: page.evaluate("document.body.dataset.loaded") == "yes", 15, "the page's first data")

    def plotted() -> bool:
        seen = [cells(page, n.id) for n in (a, b)]
        return all(s and all(s[f]["points"] >= 2 for f in ("rps", "generation")) and s["p99_ms"]["points"] >= 1
                   for s in seen)

    wait_for(plotted, 20, "plots for both nodes")
    for node in (a, b):
        seen = cells(page, node.id)
        assert seen["state"]["text"] == "live"
        assert seen["generation"]["text"] == "1"
        assert seen["p99_ms"]["text"].endswith(" ms")
    summary = page.text_content("#summary")
    assert "2 of 2 nodes live" in summary
    page.screenshot(path=str(tmp_path / "fleet.png"))

    a.process.signal(9)
    wait_for(lambda: cells(page, a.id).get("state", {}).get("text") == "unhealthy", 20, "the killed node unhealthy")
    assert "1 of 2 nodes live" in page.text_content("#summary")
    doc = httpx.get(proxy.url + "/proxy/fleet").json()
    assert doc["live"] == [b.id] and len(doc["samples"]) >= 2
    assert set(doc["samples"][-1]["nodes"]) >= {b.id}
