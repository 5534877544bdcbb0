"""Summaries of measured values and timing of calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np


def summarize(values: Sequence[float]) -> dict:
    """n, min, p50, p90, p99, max and mean of ``values`` (same unit; percentiles interpolate linearly)."""
    if not len(values):
        return {"n": 0}
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99]))
    return {"n": len(values), "min": min(values), "p50": p50, "p90": p90, "p99": p99, "max": max(values),
            "mean": float(np.mean(values))}


def time_calls(func: Callable[[], object], count: int) -> list[float]:
    """Milliseconds taken by each of ``count`` calls of ``func``."""
    spent = []
    for _ in range(count):
        started = time.perf_counter_ns()
        func()
        spent.append((time.perf_counter_ns() - started) / 1e6)
    return spent
