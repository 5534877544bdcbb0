"""A newcomer's first hour, scripted: the real demo (``scripts/demo.py`` on a 1-Gpx wall, in a work folder of
its own, at the demo's fixed addresses 127.0.0.1:8000 and 127.0.0.2-3:8080), driven as a person drives it, with
the viewer in Debian's headless Chromium.

The first demo is started with SIGINT ignored (as a script's background job is) and comes up from nothing; the
viewer opens where covers are readable; a second ``make demo`` is refused, says a demo runs, where and how to
stop it, and nothing of the first changes; ``make demo-update`` changes covers on screen at the start view,
without a reload; the README commands that need a running demo run as written against it
(tests/test_readme_commands.py); every deep link of docs/viewer.md opens at the demo's address, through the
proxy; SIGINT stops the first demo and everything it started.

Slow (a fresh demo takes a minute or two on 2 cores): ``make test-demo`` runs it, one at a time on a machine
(the addresses are fixed). ``GIGATILE_WALKTHROUGH_GPX`` changes the wall's size.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.processes import wait_for
from tests.test_readme_commands import Block, demo_blocks, run_block, sandbox
from tests.viewer.pages import START_ZOOM, close_to, stddev

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo.py"
GPX = os.environ.get("GIGATILE_WALKTHROUGH_GPX", "1")
VIEWER = "http://127.0.0.1:8000/"
ADDRESSES = (("127.0.0.1", 8000), ("127.0.0.2", 8080), ("127.0.0.3", 8080))
DOC_LINK = re.compile(r"http://127\.0\.0\.1:8000/[^\s>`)]*")
HALF_BOX = (300, 180)  # CSS px around the screen's centre: where make demo-update changes covers (demo_update.py)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("browser")]


def listening(host: str, port: int) -> bool:
    try:
        httpx.get(f"http://{host}:{port}/healthz", timeout=1)
    except httpx.ConnectError:
        return False
    except httpx.HTTPError:
        pass
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def make(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@dataclass
class RunningDemo:
    process: subprocess.Popen
    work: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def record(self) -> dict:
        return json.loads((self.work / "demo.json").read_text())

    def pids(self) -> list[int]:
        """The demo, its proxy and S3 server, and each node's node-bootstrap, IMDS emulator and children."""
        record = self.record()
        found = [self.process.pid, record["proxy_pid"], record["s3_pid"]]
        for root in record["node_roots"]:
            launch = json.loads((Path(root) / "local" / "launch.json").read_text())
            status = json.loads((Path(root) / "run" / "status.json").read_text())
            found += [launch["node_pid"], launch["imds_pid"]]
            found += [c["pid"] for c in status.get("children", []) if c.get("pid")]
        return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    taken = [f"{h}:{p}" for h, p in ADDRESSES if listening(h, p)]
    assert not taken, f"the demo's addresses are taken ({', '.join(taken)}): is a demo running? stop it first"
    work = tmp_path_factory.mktemp("walkthrough") / "demo-work"
    log = work.parent / "first-demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, str(DEMO), "--gigapixels", GPX, "--work", str(work)],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                   start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    running = RunningDemo(process, work, log)
    try:
        wait_for(lambda: "browsable in" in running.output() or process.poll() is not None, 900, "the first demo")
        assert process.poll() is None, f"the demo exited:\n{running.output()[-4000:]}"
        yield running
    finally:
        if process.poll() is None:  # the last test stops it with SIGINT; this is for a test that failed first
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(180)


def files_of(work: Path) -> dict[str, bytes]:
    """What the demo itself keeps in its work folder (not the logs its servers write as they run)."""
    return {p.name: p.read_bytes() for p in work.iterdir() if p.is_file() and not p.name.endswith(".log")}


def shot(page: Any) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#view").screenshot())).convert("RGB"), dtype=np.int16)


def say(capsys: pytest.CaptureFixture, text: str) -> None:
    with capsys.disabled():
        print(f"\n[walkthrough] {text}")


def test_the_viewer_opens_at_the_demo_where_covers_are_readable(demo: RunningDemo, open_tab, tmp_path: Path):
    info = httpx.get(f"{VIEWER}tiles/covers/info.json").json()
    tab = open_tab(VIEWER)
    state = tab.settle(60000)
    assert close_to(state["view"], {"x": info["width"] / 2, "y": info["height"] / 2, "zoom": START_ZOOM})
    assert all(t.status in (200, 304) for t in tab.tiles) and tab.bad == []
    (tmp_path / "start.png").write_bytes(tab.page.locator("#view").screenshot())
    assert stddev(tmp_path / "start.png") > 30  # books, not a 2-px colour noise of the whole wall


def test_a_second_make_demo_is_refused_and_the_first_keeps_serving(demo: RunningDemo):
    before = files_of(demo.work)
    second = make("demo", f"DEMO_ARGS=--gigapixels {GPX} --work {demo.work}")
    said = " ".join(second.stdout.split())
    assert second.returncode != 0, second.stdout
    assert f"a demo is running from {demo.work} (pid {demo.process.pid}" in said
    assert f"the viewer {VIEWER}" in said and "Ctrl-C in its terminal, or: make demo-stop" in said
    assert "stopped" not in said and "Traceback" not in second.stdout + second.stderr
    assert files_of(demo.work) == before  # demo.json, the lock, env and the stamps: not a byte changed
    assert demo.process.poll() is None
    status = httpx.get(f"{VIEWER}proxy/status").json()
    assert len(status["live"]) == 2
    assert httpx.get(f"{VIEWER}tiles/covers/0/0/0.jpg").status_code == 200


def test_make_demo_update_shows_at_the_start_view_without_a_reload(demo: RunningDemo, open_tab, capsys):
    tab = open_tab(VIEWER)
    page = tab.page
    tab.settle(60000)
    generation = int(page.evaluate("window.gigatile.state().generation"))
    page.evaluate("window.stillTheSamePage = true")
    before = shot(page)
    endings = (demo.work / "wall" / "items.csv").read_bytes().count(b"\r\n")

    began = time.monotonic()
    update = make("demo-update", f"DEMO_ARGS=--work {demo.work}")
    published = time.monotonic() - began
    assert update.returncode == 0, update.stdout + update.stderr
    for line in ("==> changed 12 covers in the middle of the wall", "==> publishing the diff",
                 f"generation {generation + 1} (diff): 12 covers changed", "127.0.0.2:8080 serves it",
                 "127.0.0.3:8080 serves it"):
        assert line in update.stdout, update.stdout
    assert re.search(r"^    \w+ \d+/\d+ \(\d+\.\d s\)$", update.stdout, re.M), update.stdout  # publish progress
    page.wait_for_function(f"() => document.getElementById('generation').dataset.generation === '{generation + 1}'",
                           timeout=30000)
    tab.settle(60000)
    on_screen = time.monotonic() - began
    assert page.evaluate("window.stillTheSamePage") is True
    assert (demo.work / "wall" / "items.csv").read_bytes().count(b"\r\n") == endings  # line endings kept

    after = shot(page)
    changed = np.abs(after - before).max(axis=2) > 40
    height, width = changed.shape
    box = np.zeros_like(changed)
    box[height // 2 - HALF_BOX[1]:height // 2 + HALF_BOX[1], width // 2 - HALF_BOX[0]:width // 2 + HALF_BOX[0]] = True
    assert changed[box].mean() > 0.05, "the covers in the middle of the start view did not change"
    assert changed[box].sum() >= 0.9 * changed.sum(), "the screen changed outside the middle"
    tab.assert_tiles_ok()
    say(capsys, f"make demo-update: published and served by both nodes in {published:.1f} s, on screen "
                f"{on_screen:.1f} s after the command")


@pytest.mark.parametrize("block", demo_blocks(), ids=lambda b: b.name.strip())
def test_the_readme_commands_for_a_running_demo_run_as_written(block: Block, demo: RunningDemo, tmp_path: Path):
    run_block(block, sandbox(tmp_path / "checkout", demo.work))  # demo-work is the running demo's folder
    assert demo.process.poll() is None and len(httpx.get(f"{VIEWER}proxy/status").json()["live"]) == 2


def test_every_deep_link_of_the_docs_opens_at_the_demo_address(demo: RunningDemo, open_tab):
    links = sorted(set(DOC_LINK.findall((REPO / "docs" / "viewer.md").read_text())))
    assert len(links) >= 4, links
    for link in links:
        tab = open_tab(link)
        state = tab.settle(60000)
        fragment = dict(p.split("=") for p in link.partition("#")[2].split("&") if "=" in p)
        if fragment:
            expected = {k: float(v) for k, v in fragment.items()}
            assert close_to(state["view"], expected), (link, state["view"])
        assert tab.tiles and all(t.status in (200, 304) for t in tab.tiles), link
        assert tab.bad == [], (link, tab.bad)


def test_sigint_stops_the_demo_and_everything_it_started(demo: RunningDemo):
    pids = demo.pids()
    assert all(pid_alive(p) for p in pids), pids
    os.kill(demo.process.pid, signal.SIGINT)  # what Ctrl-C does (its parent had left SIGINT ignored)
    assert demo.process.wait(180) == 0, demo.output()[-3000:]
    assert "stopped the proxy, 2 nodes, SeaweedFS" in demo.output()
    wait_for(lambda: not any(pid_alive(p) for p in pids), 30, "every process of the demo to be gone")
    assert not any(listening(h, p) for h, p in ADDRESSES)
    assert not (demo.work / "demo.json").exists()
    with (demo.work / "wall" / "items.csv").open(newline="") as handle:
        assert len(list(csv.reader(handle))) > 1  # the wall (with its update) stays for the next demo


def test_a_second_demo_right_after_reuses_everything_with_the_updates(demo: RunningDemo):
    published = json.loads((demo.work / "published.json").read_text())["generation"]
    assert published >= 3  # generation 1, and the two make demo-update above
    again = subprocess.run([sys.executable, str(DEMO), "--gigapixels", GPX, "--work", str(demo.work), "--once"],
                           capture_output=True, text=True, cwd=REPO, timeout=600)
    said = " ".join(again.stdout.split())
    assert again.returncode == 0, again.stdout[-3000:]
    assert "reusing" in said and "(with the changes make demo-update made to it)" in said
    assert f"the published wall: generation {published} is this wall, already published" in said
    assert "is this code (sources unchanged), not rebuilt" in said and "browsable in" in said
    assert "stopped the proxy, 2 nodes, SeaweedFS" in said
