"""``tiler.warmup`` compiles what a node's first tiles need, in either layout: after it, a render server's
process compiles nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gigaformat.layout import RELEASE_WARMED

RENDER_EVERY_LEVEL = """
import sys
from pathlib import Path
from gigaformat.layout import DatasetDir
from tiler.dataset import LoadedDataset
from tiler.encode import encode_tile
from tiler.generate import generate_wall
from tiler.local_publish import publish_local
work = Path(sys.argv[1])
generate_wall(work / "wall", gigapixels=0.003, unique=12, seed=7)  # not the warm-up's wall
folder = DatasetDir(work / "node", "d")
publish_local(work / "wall", folder, store=sys.argv[2])
ds = LoadedDataset.open(folder)
for z in range(ds.geometry.top + 1):
    encode_tile(ds.render_tile(z, 0, 0), "jpg")
"""


@pytest.fixture(scope="module")
def warmed_cache(tmp_path_factory) -> dict[str, str]:
    """An empty numba cache, warmed up: the environment that points at it."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path_factory.mktemp("numba-cache"))}
    marker = Path(sys.prefix, RELEASE_WARMED)
    existed = marker.exists()
    try:
        done = subprocess.run([sys.executable, "-m", "tiler.warmup"], env=env, capture_output=True, text=True,
                              timeout=300)
    finally:
        if not existed:
            marker.unlink(missing_ok=True)  # the warm-up marks the release it runs in: here, the test's venv
    assert done.returncode == 0, done.stderr
    return env


@pytest.mark.parametrize("store", ["chains", "pyramid"])
def test_after_the_warm_up_a_wall_of_either_layout_renders_without_compiling(warmed_cache, tmp_path, store):
    done = subprocess.run([sys.executable, "-c", RENDER_EVERY_LEVEL, str(tmp_path), store],
                          env={**warmed_cache, "NUMBA_DEBUG_CACHE": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "data saved to" not in done.stdout, "kernels compiled after the warm-up:\n" + done.stdout[-2000:]
