"""Bounded load through tile-proxy with every answer's pixels checked against a reference render.

The reference is the same source folder published on local disk (``publish_local``) and rendered in this
process: an answer is wrong when its decoded pixels differ from the reference tile's in any byte. Requests
are PNG tiles (lossless) of random levels and places, each with a random ``?v=`` so that every one is a miss
that reaches a node. The load is bounded in count and paced, so it spans the fault a scenario injects."""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from gigaformat.layout import DatasetDir
from tiler.dataset import LoadedDataset
from tiler.encode import encode_tile
from tiler.local_publish import publish_local


def pixel_digest(png: bytes) -> str:
    """sha256 of the decoded RGB pixels (and their shape)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()


class Reference:
    """The wall rendered here, tile by tile, on demand (digests memoized)."""

    def __init__(self, wall: Path, work: Path, dataset: str):
        folder = DatasetDir(work, dataset)
        publish_local(wall, folder)
        self.dataset = dataset
        self.loaded = LoadedDataset.open(folder)
        self.digests: dict[tuple[int, int, int], str] = {}
        self.lock = threading.Lock()
        g = self.loaded.geometry
        self.tiles = [(z, x, y) for z in range(g.top + 1) for x in range(g.tile_counts(z)[0])
                      for y in range(g.tile_counts(z)[1])]

    def digest(self, z: int, x: int, y: int) -> str:
        with self.lock:
            found = self.digests.get((z, x, y))
            if found is None:
                found = self.digests[(z, x, y)] = pixel_digest(encode_tile(self.loaded.render_tile(z, x, y), "png"))
            return found

    def matches(self, tile: tuple[int, int, int], png: bytes) -> bool:
        try:
            return pixel_digest(png) == self.digest(*tile)
        except OSError:  # not an image at all
            return False


@dataclass
class Answer:
    started: float  # monotonic
    finished: float
    outcome: str  # "200", "503", ..., or the exception's class name
    wrong: bool = False


@dataclass
class Load:
    """``requests`` GETs at ``rate`` per second from ``workers`` threads; ``answers`` in completion order."""

    base_url: str
    reference: Reference
    requests: int = 600
    rate: float = 60.0
    workers: int = 4
    seed: int = 17
    timeout: float = 10.0
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.plan = [(rng.choice(self.reference.tiles), rng.randrange(10 ** 9)) for _ in range(self.requests)]
        self.next = 0
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.began = 0.0

    def start(self) -> None:
        self.began = time.monotonic()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)]
        for thread in self.threads:
            thread.start()

    def done(self) -> int:
        return len(self.answers)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "the load did not finish in time"

    def _take(self) -> int | None:
        with self.lock:
            if self.next >= self.requests:
                return None
            self.next += 1
            return self.next - 1

    def _work(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            while (index := self._take()) is not None:
                delay = self.began + index / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                (z, x, y), version = self.plan[index]
                started = time.monotonic()
                try:
                    response = client.get(f"/tiles/{self.reference.dataset}/{z}/{x}/{y}.png?v={version}")
                    outcome = str(response.status_code)
                    wrong = response.status_code == 200 and not self.reference.matches((z, x, y), response.content)
                except httpx.HTTPError as exc:
                    outcome, wrong = exc.__class__.__name__, False
                with self.lock:
                    self.answers.append(Answer(started, time.monotonic(), outcome, wrong))

    def outcomes(self) -> Counter[str]:
        return Counter(a.outcome for a in self.answers)
