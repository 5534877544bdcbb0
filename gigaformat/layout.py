"""A node's disk: where every part keeps what, and the marker files by which they speak.

```
<root>/app/releases/<version>/   one installed release (a venv with this project's wheel); .installed last
<root>/app/current -> releases/<version>     switched atomically (rename of a fresh symlink)
<root>/app/previous -> releases/<version>    the release before, kept for rollback
<root>/app/downloads/            bundles being downloaded and verified (never installed from unless verified)
<root>/app/bootstrap/            fresh bootstraps fetched from S3 (<digest>.pyz)
<root>/data/<dataset>/
  objects/<key>                  verified objects (packs, state and changes documents), keys as in the manifest
  generations/<G>/state.json.gz  the merged state at generation G
  current -> generations/<G>     symlink, switched atomically when G is complete and verified
  synch.active                   written by the render server (and node-bootstrap): "I need this dataset"
  synch.lazy                     written by boxlink: {"generation": G, "bucket", "prefix"}: G is staged (its
                                 state and tile index verified), its packs are arriving: serve it, fetching
                                 what is not here yet from s3://bucket/prefix
  synch.down                     written by boxlink: {"generation": G, ...}: all of G is here and verified
  synch.serving                  written by the render server once the node serves G: {"generation": G, ...}
                                 (its heartbeat, once the registration record names G; else a worker); boxlink
                                 holds a lazy start's fill until then, a few seconds at most
  synch.answered                 written by the render server when it has answered its first tile of a lazy G:
                                 {"generation": G, ...}; boxlink's held fill starts then (or 2 s after serving)
<root>/data/log/                 rolling logs (render, boxlink, bootstrap), uploaded by boxlink
<root>/run/status.json           node-bootstrap's state, rewritten on every change
<root>/local/                    only on local nodes: user-data, the launch record, the IMDS emulator's log
```
boxlink (the only writer of ``data/<dataset>/`` but for the render server's three markers) switches
``current`` and then writes ``synch.down``; the render server reads only ``current``, and only once
``synch.down`` names the same generation.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from gigaformat.clock import utc_now_iso
from gigaformat.durable import point_link, write_atomic
from gigaformat.errors import FormatError, MalformedDocument
from gigaformat.names import check_dataset_name, is_dataset_name
from gigaformat.state import STATE_NAME, State, collector_paused, dump_gzip_json, load_gzip_json
from gigaformat.tiles import INDEX_NAME, TileIndex

ACTIVE = "synch.active"
DOWN = "synch.down"
LAZY = "synch.lazy"
SERVING = "synch.serving"
ANSWERED = "synch.answered"
LOG_FOLDER = "log"
RELEASE_INSTALLED = ".installed"  # in a release folder, written last by the install
RELEASE_WARMED = ".warmed"  # in a release folder: its render kernels are compiled (tiler.warmup)


class MissingGeneration(FormatError):
    """A generation a marker or link names is not (or no longer) on disk."""


@dataclass(frozen=True)
class NodeLayout:
    """The paths under one node's root."""

    root: Path

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def releases(self) -> Path:
        return self.app / "releases"

    @property
    def current(self) -> Path:
        return self.app / "current"

    @property
    def previous(self) -> Path:
        return self.app / "previous"

    @property
    def downloads(self) -> Path:
        return self.app / "downloads"

    @property
    def fresh_bootstraps(self) -> Path:
        return self.app / "bootstrap"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / LOG_FOLDER

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def status_path(self) -> Path:
        return self.run_dir / "status.json"

    @property
    def local_dir(self) -> Path:
        return self.root / "local"

    def release_dir(self, version: str) -> Path:
        return self.releases / version

    def current_bin(self, program: str) -> Path:
        """A program of the current release, through the ``current`` link (resolved at each start)."""
        return self.current / "bin" / program

    def current_version(self) -> str | None:
        """The version ``current`` points at, or None before the first install."""
        try:
            return Path(self.current.readlink()).name
        except OSError:
            return None

    def dataset(self, name: str) -> DatasetDir:
        return DatasetDir(self.root, name)

    def datasets(self) -> list[DatasetDir]:
        """Every dataset folder under ``data/`` (the log folder and hidden folders excluded)."""
        base = self.data_dir
        if not base.is_dir():
            return []
        return [DatasetDir(self.root, child.name) for child in sorted(base.iterdir())
                if child.is_dir() and child.name != LOG_FOLDER and is_dataset_name(child.name)]


@dataclass(frozen=True)
class DatasetDir:
    """One dataset's folder on a node: its objects, generations, ``current`` and markers."""

    root: Path  # the node root
    dataset: str

    def __post_init__(self) -> None:
        check_dataset_name(self.dataset)

    @property
    def path(self) -> Path:
        return NodeLayout(Path(self.root)).data_dir / self.dataset

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
    def mark_active(self, by: str = "tiler serve") -> None:
        """Write ``synch.active`` (its existence is the request; its content is informative)."""
        write_atomic(self.path / ACTIVE, json.dumps({"dataset": self.dataset, "since": utc_now_iso(),
                                                     "by": by}).encode())

    def is_active(self) -> bool:
        return (self.path / ACTIVE).exists()

    def mark_down(self, generation: int) -> None:
        doc = {"dataset": self.dataset, "generation": generation, "verified": utc_now_iso(), "time": time.time()}
        write_atomic(self.path / DOWN, json.dumps(doc).encode())

    def mark_lazy(self, generation: int, bucket: str, prefix: str) -> None:
        doc = {"dataset": self.dataset, "generation": generation, "bucket": bucket, "prefix": prefix,
               "since": utc_now_iso()}
        write_atomic(self.path / LAZY, json.dumps(doc).encode())

    def lazy_marker(self) -> dict | None:
        """What ``synch.lazy`` says ({"generation", "bucket", "prefix"}), or None if there is none."""
        try:
            doc = json.loads((self.path / LAZY).read_bytes())
            return {"generation": int(doc["generation"]), "bucket": str(doc["bucket"]), "prefix": str(doc["prefix"])}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def mark_serving(self, generation: int, lazy: bool) -> None:
        doc = {"dataset": self.dataset, "generation": generation, "lazy": lazy, "by": os.getpid(),
               "since": utc_now_iso()}
        write_atomic(self.path / SERVING, json.dumps(doc).encode())

    def serving_generation(self) -> int | None:
        """The generation ``synch.serving`` names (a render server serves it), or None."""
        return self._generation_in(SERVING)

    def mark_answered(self, generation: int) -> None:
        doc = {"dataset": self.dataset, "generation": generation, "by": os.getpid(), "since": utc_now_iso()}
        write_atomic(self.path / ANSWERED, json.dumps(doc).encode())

    def answered_generation(self) -> int | None:
        """The generation ``synch.answered`` names (the render server has answered a tile of it), or None."""
        return self._generation_in(ANSWERED)

    def _generation_in(self, marker: str) -> int | None:
        try:
            return int(json.loads((self.path / marker).read_bytes())["generation"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_staged(self, generation: int) -> bool:
        return (self.generation_dir(generation) / STATE_NAME).is_file()

    def down_generation(self) -> int | None:
        """The generation ``synch.down`` names, or None if there is none (or it is unreadable)."""
        return self._generation_in(DOWN)

    # -- generations -----------------------------------------------------------------------
    def write_state(self, state: State) -> Path:
        """Stage ``generations/<g>/``: the tile index first, the state document (what marks it staged) last."""
        # Level 1: a file on this disk, not an upload (a 4,600-item state: 4 ms instead of 18, 11 % larger).
        return self.write_state_documents(state.generation, dump_gzip_json(state.to_json(), compresslevel=1),
                                          state.tiles.to_bytes() if state.tiles is not None else None)

    def write_state_documents(self, generation: int, state_doc: bytes, tile_index: bytes | None) -> Path:
        """Stage ``generations/<generation>/`` from its documents' bytes (gzipped state, tile index), in the
        order ``write_state`` writes them."""
        folder = self.generation_dir(generation)
        if tile_index is not None:
            write_atomic(folder / INDEX_NAME, tile_index)
        write_atomic(folder / STATE_NAME, state_doc)
        return folder

    def switch_to(self, generation: int) -> None:
        """Point ``current`` at generations/<generation> atomically; MalformedDocument if it is not staged."""
        if not (self.generation_dir(generation) / STATE_NAME).is_file():
            raise MalformedDocument(f"{self.dataset}: generation {generation} is not staged")
        point_link(self.current, f"generations/{generation}")

    def current_generation(self) -> int | None:
        try:
            return int(Path(os.readlink(self.current)).name)
        except (OSError, ValueError):
            return None

    def load_current_state(self) -> State:
        generation = self.current_generation()
        if generation is None:
            raise MissingGeneration(f"{self.dataset}: no generation is switched in under {self.path}")
        return self.load_state(generation)

    def load_state(self, generation: int) -> State:
        """The merged state of ``generation``; MissingGeneration or MalformedDocument if it cannot be had."""
        path = self.generation_dir(generation) / STATE_NAME
        index = path.with_name(INDEX_NAME)
        with collector_paused():
            try:
                doc = load_gzip_json(path.read_bytes(), str(path))
                tiles = TileIndex.from_bytes(index.read_bytes(), str(index)) if index.exists() else None
            except OSError as exc:
                raise MissingGeneration(f"{path}: cannot read ({exc.strerror})") from None
            return State.from_json(doc, tiles)
