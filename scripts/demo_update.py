"""``make demo-update``: change a few covers of the running demo's wall, publish the diff, and wait until
both nodes serve it. The covers changed are around the middle of the wall, where the viewer opens
(``START_ZOOM`` in tiler/viewer/viewstate.js), so the change is on screen without moving."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gigaformat.s3 import make_client
from tiler.publish import publish

from demo_reuse import record_publish
from demo_session import Record

START_ZOOM = 1 / 8  # tiler/viewer/viewstate.js: the page opens at the canvas centre at this zoom
# Half the screen a viewer surely has (CSS px): covers inside it are on screen at the start view.
HALF_SCREEN = (300, 180)
CHANGED = 12


def centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The canvas rectangle (x0, y0, x1, y1) on every screen at the start view."""
    half_w, half_h = HALF_SCREEN[0] / START_ZOOM, HALF_SCREEN[1] / START_ZOOM
    return (round(width / 2 - half_w), round(height / 2 - half_h), round(width / 2 + half_w),
            round(height / 2 + half_h))


def change_covers(rows: list[list[str]], width: int, height: int, rng: random.Random,
                  count: int = CHANGED) -> list[int]:
    """Give up to ``count`` items inside the centre box another of the wall's images (in place, ``rows``
    without the header); returns their indices. Items are ``id,x,y,width,height,image``."""
    x0, y0, x1, y1 = centre_box(width, height)
    inside = [i for i, r in enumerate(rows)
              if int(r[1]) >= x0 and int(r[2]) >= y0 and int(r[1]) + int(r[3]) <= x1 and int(r[2]) + int(r[4]) <= y1]
    images = sorted({r[5] for r in rows})
    picked = rng.sample(inside, min(count, len(inside)))
    for i in picked:
        rows[i][5] = rng.choice([image for image in images if image != rows[i][5]] or images)
    return picked


def line_ending(path: Path) -> str:
    with path.open("rb") as handle:
        first = handle.readline()
    return "\r\n" if first.endswith(b"\r\n") else "\n"


def rewrite_items(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write items.csv with the line endings it had, atomically (a complete file at every moment)."""
    text = io.StringIO()
    csv.writer(text, lineterminator=line_ending(path)).writerows([header, *rows])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(text.getvalue().encode())
    os.replace(tmp, path)


class PhaseLines:
    """Publish progress as plain lines (a terminal or a log alike): each phase when it is done, with its count
    and time, and every ``every`` seconds while a long one runs."""

    def __init__(self, say: Callable[[str], None], every: float = 5.0):
        self.say, self.every = say, every
        self.began = self.last = time.monotonic()
        self.done: set[str] = set()

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total and phase not in self.done
        if finished or (phase not in self.done and now - self.last >= self.every):
            self.say(f"    {phase} {done}/{total} ({now - self.began:.1f} s)")
            self.last = now
        if finished:
            self.done.add(phase)


def served_generation(node: str, dataset: str) -> int | None:
    try:
        return int(httpx.get(f"{node}/tiles/{dataset}/info.json", timeout=2).json()["generation"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def update(record: Record, wall: Path, dataset: str, stamp: Path, say: Callable[[str], None],
           timeout: float = 120.0) -> float:
    """Change covers of ``wall`` (the demo's), publish the diff to the demo's S3 and wait until every node
    of ``record`` serves it; returns the seconds it all took."""
    began = time.monotonic()
    canvas = json.loads((wall / "canvas.json").read_text())
    with (wall / "items.csv").open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    picked = change_covers(rows, canvas["width"], canvas["height"], random.Random(time.time_ns()))
    if not picked:
        raise RuntimeError(f"no cover lies inside the middle of {wall}: nothing to change")
    rewrite_items(wall / "items.csv", header, rows)
    x0, y0, x1, y1 = centre_box(canvas["width"], canvas["height"])
    say(f"==> changed {len(picked)} covers in the middle of the wall (x {x0}-{x1}, y {y0}-{y1}), where the "
        "viewer opens")
    say(f"==> publishing the diff to s3://{record.bucket}/data/{dataset}/ (reads the whole wall, draws only "
        "what changed)")
    result = publish(wall, dataset, record.bucket, make_client(), progress=PhaseLines(say))
    record_publish(stamp, result.generation, wall)
    say(f"    generation {result.generation} ({' + '.join(result.kinds) or 'no change'}): {result.changed_items} "
        f"covers changed, {result.bytes_uploaded / 1e6:.1f} MB in {result.seconds:.1f} s")
    say(f"==> waiting for the {len(record.nodes)} nodes to serve generation {result.generation} "
        "(boxlink pulls the diff, tiler serve switches to it)")
    waiting, deadline = set(record.nodes), time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for node in sorted(waiting):
            if (served_generation(node, dataset) or 0) >= result.generation:
                waiting.discard(node)
                say(f"    {node.removeprefix('http://')} serves it, {time.monotonic() - began:.1f} s after the start")
        time.sleep(0.2)
    if waiting:
        raise RuntimeError(f"{', '.join(sorted(waiting))} did not serve generation {result.generation} within "
                           f"{timeout:.0f} s; see their logs under {record.work}/nodes/")
    return time.monotonic() - began
