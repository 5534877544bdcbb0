"""Where results go: ``bench/results/`` (git-ignored), one JSON document per run, named by UTC time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / "work"


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def write_results(name: str, doc: dict, directory: Path = RESULTS_DIR) -> Path:
    """Write ``doc`` to ``<directory>/<UTC timestamp>-<name>.json`` and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{timestamp()}-{name}.json"
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path
