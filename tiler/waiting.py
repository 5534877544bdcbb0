"""Which wanted datasets a render server has no data of yet, and what to do about it, in words.

Light on imports on purpose: ``tiler serve`` says it in its parent process first thing, before that process
imports the app (numpy, the render core: ~0.3 s) to fork the workers from.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from gigaformat.layout import DatasetDir


def without_data(root: Path, names: Iterable[str]) -> list[str]:
    """The datasets boxlink has put nothing of on this node's disk yet (neither synch.down nor synch.lazy)."""
    folders = {name: DatasetDir(root, name) for name in names}
    return [name for name, folder in folders.items()
            if folder.down_generation() is None and not folder.lazy_marker()]


def no_data_reason(root: Path, name: str) -> str:
    return f"no data yet: run boxlink (or node-bootstrap) to replicate it into {root / 'data' / name}/"
