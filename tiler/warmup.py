"""Compile a release's render kernels before its first request: ``<release>/bin/python -m tiler.warmup``.

The render core is numba-compiled on first use and cached beside its sources (``cache=True``), so a new
release would spend its first tile (seconds) compiling, in every worker. node-bootstrap runs this once
per installed release without shipped kernels, beside boxlink's first sync and at a lower priority: it renders
every level of a tiny generated wall in each layout, which fills the cache one kernel at a time (a worker
needing a kernel before then compiles only those not cached yet), then writes ``<release>/.warmed``. Runs inside the
release; ``node-bootstrap release`` runs it too, to ship the kernels (bootstrap/release/kernels.py).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from gigaformat.layout import RELEASE_WARMED, DatasetDir
from tiler.dataset import LoadedDataset
from tiler.encode import encode_tile
from tiler.generate import generate_wall
from tiler.local_publish import publish_local

# Both layouts, whichever this tiny wall would get by itself ("pyramid"): a wall of chains composes its tiles
# with kernels a pyramid never calls, and a node serving one would compile them at its first tile (13 s here).
STORES = ("chains", "pyramid")


def main() -> int:
    started = time.monotonic()
    os.nice(10)  # spare CPU only: boxlink's sync and the render server's start are the critical path
    with tempfile.TemporaryDirectory(prefix="gigatile-warmup-") as tmp:
        work = Path(tmp)
        generate_wall(work / "wall", gigapixels=0.002, unique=8, seed=1)
        for store in STORES:
            folder = DatasetDir(work / store, "warmup")
            publish_local(work / "wall", folder, store=store)
            loaded = LoadedDataset.open(folder)
            for z in range(loaded.geometry.top + 1):
                for fmt in ("jpg", "png", "webp"):
                    encode_tile(loaded.render_tile(z, 0, 0), fmt)
    Path(sys.prefix, RELEASE_WARMED).write_text(f"{time.time()}\n")
    print(f"warmup done release={sys.prefix} seconds={time.monotonic() - started:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
