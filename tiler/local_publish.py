"""Publish a source folder straight into a node's dataset folder, no S3 (one-node use, tests, export)."""

from __future__ import annotations

from pathlib import Path

from gigaformat.errors import FormatError
from gigaformat.itemsdb import ITEMS_INDEX_NAME, stage_items_index
from gigaformat.layout import DatasetDir
from gigaformat.state import diff_states
from tiler.build import build_generation
from tiler.publish import check_shrink
from tiler.source import load_source
from tiler.storage import ITEMS_PER_TILE_LIMIT


def read_local_blob(folder: DatasetDir):
    """(pack key, offset, length) -> bytes, from the node's verified objects."""

    def read(key: str, offset: int, length: int) -> bytes:
        with folder.object_path(key).open("rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    return read


def publish_local(source_dir: Path, folder: DatasetDir, items_per_tile: int = ITEMS_PER_TILE_LIMIT,
                  store: str = "auto", allow_shrink: bool = True) -> int:
    """Build the next generation of ``folder`` from ``source_dir``, switch it in; return its number."""
    source = load_source(source_dir)
    previous = folder.load_current_state() if folder.current_generation() is not None else None
    check_shrink(source, previous, allow_shrink)
    generation = 1 if previous is None else previous.generation + 1
    prefix = f"{'snap' if previous is None else 'diff'}-{generation}/"
    build = build_generation(source, folder.dataset, generation, prefix, folder.objects, previous,
                             reuse=previous is not None, items_per_tile=items_per_tile, store=store,
                             fetch_previous=read_local_blob(folder))
    changes = None
    if previous is not None:
        try:
            changes = diff_states(previous, build.state)
            changes.meta_set = build.meta_set(previous)
            if changes.is_empty():
                return previous.generation
        except FormatError:
            pass  # a new layout or canvas: the generation is a whole new one, written below
    target = folder.generation_dir(generation) / ITEMS_INDEX_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    if build.items_archive is not None:
        stage_items_index(target, build.items_archive, None, [])
    else:
        stage_items_index(target, None, folder.generation_dir(previous.generation) / ITEMS_INDEX_NAME,
                          [(changes.meta_set, changes.items_remove)])
    folder.write_state(build.state)
    folder.switch_to(generation)
    folder.mark_down(generation)
    return generation
