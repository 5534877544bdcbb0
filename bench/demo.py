"""The newcomer's demo (issue 19), by hand: what ``make demo`` and ``make demo-update`` cost a person.

1. ``scripts/demo.py`` from an empty work folder (the venv already installed) to the first tile served through
   the proxy at http://127.0.0.1:8000/;
2. ``scripts/demo.py update`` (``make demo-update``), ``--updates`` times, each from the command to the change
   drawn in headless Chromium at the viewer's start view (and to the command's end: both nodes serving it);
3. the demo stopped and started again on the same folder, to the first tile.

Not part of ``make bench``: it needs the demo's fixed addresses (127.0.0.1:8000, 127.0.0.2-3:8080) free, so no
demo may run meanwhile. Its figures are for reference (the README states them); the update is shown beside the
viewer's poll interval, the part of it that is waiting by design.

    .venv/bin/python -m bench.demo [--quick] [--gigapixels 46] [--updates 3]

Writes ``bench/results/<timestamp>-demo.json``.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.bars import bar, format_bars
from bench.machine import load_average, machine
from bench.processes import Children, http_status, run_and_report, wait_until
from bench.progress import console
from bench.results import RESULTS_DIR, WORK_DIR, write_results

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "scripts" / "demo.py"
VIEWER = "http://127.0.0.1:8000/"
ADDRESSES = (("127.0.0.1", 8000), ("127.0.0.2", 8080), ("127.0.0.3", 8080))
POLL_SECONDS = 5.0  # the viewer's default poll of info.json (tiler/viewer/viewer.js)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DRAWN = """(generation) => {
    const s = window.gigatile && window.gigatile.state();
    return Boolean(s && s.generation === generation && s.fullyLoaded && !s.animating && !s.swapping
                   && s.images === 1);
}"""


@dataclass(frozen=True)
class DemoBenchSettings:
    work: Path = WORK_DIR
    gigapixels: float = 46.0
    updates: int = 3
    results_dir: Path | None = RESULTS_DIR

    def quick(self) -> DemoBenchSettings:
        return replace(self, gigapixels=1.0, updates=1)


def taken() -> list[str]:
    busy = []
    for host, port in ADDRESSES:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                busy.append(f"{host}:{port}")
    return busy


def start_demo(children: Children, work: Path, gigapixels: float, log: str) -> float:
    """Start the demo on ``work``; return the seconds to its first tile through the proxy."""
    began = time.monotonic()
    demo = children.start([sys.executable, DEMO, "--work", work, "--gigapixels", f"{gigapixels:g}"], log, cwd=REPO)

    def served() -> bool:
        if demo.poll() is not None:
            raise RuntimeError(f"the demo exited with code {demo.returncode}; see {children.log_dir / log}")
        return http_status(f"{VIEWER}tiles/covers/0/0/0.jpg") == 200

    wait_until(served, 900, "the demo's first tile")
    return time.monotonic() - began


def update_on_screen(page, work: Path) -> dict:
    """One ``make demo-update`` with the viewer open at its start view: seconds to the command's end (both nodes
    serving) and to the new generation drawn on the page."""
    generation = page.evaluate("window.gigatile.state().generation")
    began = time.monotonic()
    done = subprocess.run([sys.executable, DEMO, "update", "--work", str(work)], capture_output=True, text=True,
                          timeout=600)
    command = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError(f"demo update failed:\n{done.stdout[-2000:]}")
    page.wait_for_function(DRAWN, arg=generation + 1, timeout=120000, polling=100)
    return {"command_seconds": command, "on_screen_seconds": time.monotonic() - began,
            "output": done.stdout.splitlines()}


def run(settings: DemoBenchSettings) -> dict:
    from playwright.sync_api import sync_playwright

    if busy := taken():
        raise RuntimeError(f"the demo's addresses are in use ({', '.join(busy)}): stop the running demo first")
    doc: dict = {"bench": "demo", "issue": 19, "settings": {k: str(v) for k, v in asdict(settings).items()},
                 "machine": machine(), "load_average_start": load_average()}
    work = settings.work / "demo-bench"
    shutil.rmtree(work, ignore_errors=True)
    with Children(settings.work / "demo-logs") as children:
        with console.status(f"make demo from an empty folder ({settings.gigapixels:g} Gpx)"):
            doc["fresh_seconds"] = start_demo(children, work, settings.gigapixels, "demo-fresh.log")
        console.log(f"first tile {doc['fresh_seconds']:.1f} s after the start")
        updates = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.goto(VIEWER)
            page.wait_for_function("() => Boolean(window.gigatile && window.gigatile.state().fullyLoaded)",
                                   timeout=120000, polling=200)
            for n in range(settings.updates):
                with console.status(f"make demo-update {n + 1}/{settings.updates}"):
                    updates.append(update_on_screen(page, work))
                console.log(f"update {n + 1}: on screen after {updates[-1]['on_screen_seconds']:.1f} s")
            browser.close()
        children.stop(children.popens[-1], grace=120)
        with console.status("make demo again on the same folder"):
            doc["again_seconds"] = start_demo(children, work, settings.gigapixels, "demo-again.log")
        children.stop(children.popens[-1], grace=120)
    on_screen = [u["on_screen_seconds"] for u in updates]
    doc.update(updates=updates, load_average_end=load_average())
    doc["bars"] = [
        bar(f"make demo from an empty folder to the first tile, {settings.gigapixels:g} Gpx (venv installed)",
            doc["fresh_seconds"], "s", None),
        bar("make demo again on the same folder, to the first tile", doc["again_seconds"], "s", None),
        bar(f"make demo-update to the change drawn at the start view (median of {len(on_screen)})",
            statistics.median(on_screen), "s", None, anchor="the viewer's poll interval", anchor_figure=POLL_SECONDS,
            note=f"worst {max(on_screen):.1f} s; both nodes serving after "
                 f"{statistics.median(u['command_seconds'] for u in updates):.1f} s"),
    ]
    if settings.results_dir is not None:
        doc["results_file"] = str(write_results("demo", doc, settings.results_dir))
    return doc


def print_report(doc: dict) -> None:
    print(format_bars(doc["bars"]))
    print(f"load average {doc['load_average_start'][0]:.1f} -> {doc['load_average_end'][0]:.1f}")
    if "results_file" in doc:
        print(f"results: {doc['results_file']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1-Gpx wall, one update")
    parser.add_argument("--gigapixels", type=float, default=None, help="wall size (default 46; quick: 1)")
    parser.add_argument("--updates", type=int, default=None, help="make demo-update runs (default 3; quick: 1)")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="bench work folder")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    settings = DemoBenchSettings(work=args.work, results_dir=args.results_dir)
    settings = settings.quick() if args.quick else settings
    settings = replace(settings, gigapixels=args.gigapixels or settings.gigapixels,
                       updates=args.updates or settings.updates)
    return run_and_report(run, print_report, settings, stopped="the demo was stopped (SIGTERM, by PID)")


if __name__ == "__main__":
    sys.exit(main())
