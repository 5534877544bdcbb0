"""``tiler serve`` as a bench child: started on a free port, ready on every worker, and its cache counters."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from bench.processes import Children, free_port, http_client, http_status, wait_until
from bench.progress import console
from bench.walls import DATASET, TILER
from gigaformat.layout import DatasetDir
from gigaformat.levels import Geometry
from tiler.coarse_raster import plan_levels, raster_path
from tiler.settings import ServeSettings


def start_tiler_serve(children: Children, root: Path, log_name: str, workers: int = 2, datasets: str = DATASET,
                      extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """``tiler serve`` on a free 127.0.0.1 port; returns (process, base URL) once /readyz has been 200
    twenty times in a row (connections land on any worker, so every worker has loaded) and each dataset's
    coarse raster is built (unless ``extra`` turns it off): what is measured is the server as it runs."""
    port = free_port()
    server = children.start([TILER, "serve", "--root", root, "--datasets", datasets, "--host", "127.0.0.1",
                             "--port", port, "--workers", workers, *extra], log_name)
    base = f"http://127.0.0.1:{port}"
    streak = 0

    def ready() -> bool:
        nonlocal streak
        if server.poll() is not None:
            raise RuntimeError(f"tiler serve exited ({server.returncode}); see {children.log_dir / log_name}")
        streak = streak + 1 if http_status(base + "/readyz") == 200 else 0
        return streak >= 20

    wait_until(ready, 180, "tiler serve /readyz")
    if "--coarse-raster-mb" not in extra:
        started = time.monotonic()
        for name in datasets.split(","):
            folder = DatasetDir(root, name)
            if not plans_a_raster(folder):
                continue
            path = raster_path(folder, folder.current_generation())
            wait_until(path.is_file, 300, f"the coarse raster {path} (see {children.log_dir / log_name})")
        console.log(f"coarse rasters of {datasets} there {time.monotonic() - started:.1f} s after ready")
    return server, base


def plans_a_raster(folder: DatasetDir) -> bool:
    """Whether the server (at its default ``--coarse-raster-mb``) gives the served generation a coarse raster."""
    state = folder.load_current_state()
    geometry = Geometry(state.canvas.width, state.canvas.height)
    return bool(plan_levels(geometry, state.overview_level, ServeSettings.coarse_raster_mb << 20))


def cache_lookups(base: str) -> dict[str, float]:
    """Encoded-tile cache hits and misses so far, summed over workers (from /metrics)."""
    text = http_client().get(base + "/metrics", timeout=5).text
    found = re.findall(r'^gigatile_tile_cache_total\{result="(\w+)"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return {result: float(value) for result, value in found}
