"""A node's copy of a dataset on disk: the contract between boxlink (writer) and the render server.

```
<root>/data/<dataset>/
  objects/<key>                   verified objects (packs, state and changes documents), keys as in the manifest
  generations/<G>/state.json.gz   the merged state at generation G
  current -> generations/<G>      symlink, switched atomically (rename) when G is complete and verified
  synch.active                    written by the render server: "I need this dataset"
  synch.down                      written by boxlink: {"generation": G, ...}: all of G is here and verified
<root>/data/log/                  rolling logs, uploaded by boxlink
```
The render server reads only ``current`` after ``synch.down`` names its generation.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tiler.errors import TilerError
from tiler.manifest import check_dataset_name
from tiler.state import State, dump_gzip_json, load_gzip_json

ACTIVE = "synch.active"
DOWN = "synch.down"


def utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file, fsync, rename: readers see the old or the new file, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (after a power loss the switch or marker is not lost)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def data_dir(root: Path) -> Path:
    return Path(root) / "data"


def log_dir(root: Path) -> Path:
    return data_dir(root) / "log"


@dataclass(frozen=True)
class DatasetDir:
    root: Path  # the node root
    dataset: str

    def __post_init__(self) -> None:
        check_dataset_name(self.dataset)

    @property
    def path(self) -> Path:
        return data_dir(self.root) / self.dataset

    @property
    def objects(self) -> Path:
        return self.path / "objects"

    @property
    def generations(self) -> Path:
        return self.path / "generations"

    @property
    def current(self) -> Path:
        return self.path / "current"

    def object_path(self, key: str) -> Path:
        return self.objects / key

    def generation_dir(self, generation: int) -> Path:
        return self.generations / str(generation)

    # -- markers ---------------------------------------------------------------------------
    def mark_active(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / ACTIVE, json.dumps({"dataset": self.dataset, "since": utc_now_iso()}).encode())

    def is_active(self) -> bool:
        return (self.path / ACTIVE).exists()

    def mark_down(self, generation: int) -> None:
        doc = {"dataset": self.dataset, "generation": generation, "verified": utc_now_iso(), "time": time.time()}
        write_atomic(self.path / DOWN, json.dumps(doc).encode())

    def down_generation(self) -> int | None:
        """The generation ``synch.down`` names, or None if there is none (or it is unreadable)."""
        try:
            return int(json.loads((self.path / DOWN).read_bytes())["generation"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- generations -----------------------------------------------------------------------
    def write_state(self, state: State) -> Path:
        folder = self.generation_dir(state.generation)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "state.json.gz", dump_gzip_json(state.to_json()))
        return folder

    def switch_to(self, generation: int) -> None:
        """Point ``current`` at generations/<generation> atomically."""
        if not (self.generation_dir(generation) / "state.json.gz").is_file():
            raise TilerError(f"{self.dataset}: generation {generation} is not staged")
        link = self.path / f".current.{os.getpid()}.tmp"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(f"generations/{generation}", link)
        os.replace(link, self.current)
        fsync_dir(self.path)

    def current_generation(self) -> int | None:
        try:
            return int(Path(os.readlink(self.current)).name)
        except (OSError, ValueError):
            return None

    def load_current_state(self) -> State:
        generation = self.current_generation()
        if generation is None:
            raise TilerError(f"{self.dataset}: no generation is switched in under {self.path}")
        return self.load_state(generation)

    def load_state(self, generation: int) -> State:
        path = self.generation_dir(generation) / "state.json.gz"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TilerError(f"{path}: cannot read ({exc.strerror})") from None
        return State.from_json(load_gzip_json(data, str(path)))


def datasets_under(root: Path) -> list[DatasetDir]:
    """Every dataset folder under <root>/data (the log folder excluded)."""
    found = []
    base = data_dir(root)
    if base.is_dir():
        for child in sorted(base.iterdir()):
            if child.is_dir() and child.name != "log" and not child.name.startswith("."):
                try:
                    found.append(DatasetDir(Path(root), child.name))
                except TilerError:
                    continue
    return found
