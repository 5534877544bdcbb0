"""Publish a source folder straight into a node's dataset folder, no S3 (one-node use, tests, export)."""

from __future__ import annotations

from pathlib import Path

from gigaformat.layout import DatasetDir
from gigaformat.state import diff_states
from tiler.build import build_generation
from tiler.overview import ITEMS_PER_TILE_LIMIT
from tiler.source import load_source


def publish_local(source_dir: Path, folder: DatasetDir, items_per_tile: int = ITEMS_PER_TILE_LIMIT) -> int:
    """Build the next generation of ``folder`` from ``source_dir``, switch it in; return its number."""
    source = load_source(source_dir)
    previous = folder.load_current_state() if folder.current_generation() is not None else None
    generation = 1 if previous is None else previous.generation + 1
    prefix = f"{'snap' if previous is None else 'diff'}-{generation}/"
    build = build_generation(source, folder.dataset, generation, prefix, folder.objects, previous,
                             reuse=previous is not None, items_per_tile=items_per_tile)
    if previous is not None and diff_states(previous, build.state).is_empty():
        return previous.generation
    folder.write_state(build.state)
    folder.switch_to(generation)
    folder.mark_down(generation)
    return generation
