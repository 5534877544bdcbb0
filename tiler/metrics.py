"""Prometheus metrics of the render server (multi-process aware: PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("gigatile_requests_total", "HTTP requests by route and status", ["route", "status"])
RENDER_SECONDS = Histogram("gigatile_render_seconds", "Time to render and encode one tile, by level", ["level"],
                           buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.5, 2.0))
CACHE = Counter("gigatile_tile_cache_total", "Encoded-tile cache lookups", ["result"])
OVERLOADED = Counter("gigatile_overload_total", "Requests refused with 503 because the render queue was full")
GENERATION = Gauge("gigatile_dataset_generation", "Generation served", ["dataset"], multiprocess_mode="max")
RENDER_QUEUE = Gauge("gigatile_render_queue", "Renders admitted and not finished (running or waiting)",
                     multiprocess_mode="livesum")
RENDER_QUEUE_LIMIT = Gauge("gigatile_render_queue_limit", "Renders admitted at most before 503 (per worker)",
                           multiprocess_mode="livesum")
COARSE_RASTER = Gauge("gigatile_coarse_raster_bytes", "Bytes of the coarse raster the served generation's coarse "
                      "levels are copied from (0: none yet, or none planned)", ["dataset"],
                      multiprocess_mode="livemax")
DISK_FREE = Gauge("gigatile_disk_free_bytes", "Free bytes on the filesystem of the node root",
                  multiprocess_mode="livemostrecent")
DISK_SIZE = Gauge("gigatile_disk_size_bytes", "Size of the filesystem of the node root",
                  multiprocess_mode="livemostrecent")
_disk: list[Path] = []


def watch_disk(root: Path) -> None:
    """Report the free space of ``root``'s filesystem at every scrape (what fills: data/, logs)."""
    _disk[:] = [root]


def _measure_disk() -> None:
    for root in _disk:
        try:
            usage = shutil.disk_usage(root)
        except OSError:
            continue
        DISK_FREE.set(usage.free)
        DISK_SIZE.set(usage.total)


def exposition() -> tuple[bytes, str]:
    _measure_disk()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
