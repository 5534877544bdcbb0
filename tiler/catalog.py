"""The datasets a render server serves, each behind an atomic swap to newer verified generations."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from gigaformat.errors import FormatError
from gigaformat.layout import SERVING, DatasetDir, NodeLayout
from tiler.coarse_raster import RasterKeeper
from tiler.dataset import LoadedDataset
from tiler.errors import NotFound, NotReady, TilerError
from tiler.waiting import no_data_reason, without_data

log = logging.getLogger(__name__)


@dataclass
class Catalog:
    root: Path
    wanted: tuple[str, ...] = ()  # datasets this server asks boxlink for (synch.active)
    loaded: dict[str, LoadedDataset] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    rasters: RasterKeeper | None = None  # decoded coarse levels for each fully local generation
    # Write synch.serving at each switch. False on a node with a registry: its heartbeat writes it once the
    # record names the generation (the node counts as serving then, docs/architecture.md).
    announces: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _refreshing: threading.Lock = field(default_factory=threading.Lock)  # one refresh at a time: a dataset is
    # opened once, however many requests and the watch loop ask for it together

    def request_wanted(self) -> None:
        """Write synch.active for every wanted dataset: boxlink starts replicating them."""
        for name in self.wanted:
            DatasetDir(self.root, name).mark_active()

    def get(self, name: str) -> LoadedDataset:
        found = self.loaded.get(name)
        if found is None:
            if name in self.wanted:  # asked for, still replicating or loading: come back, not "gone"
                raise NotReady(f"dataset {name!r}: {self.waiting_for(name)}; retry shortly")
            raise NotFound(f"unknown dataset {name!r}")
        return found

    def waiting_for(self, name: str) -> str:
        """Why wanted dataset ``name`` is not served yet, in words: no data on this node, or loading."""
        if name in self.without_data():
            return no_data_reason(self.root, name)
        return "not loaded yet"

    def without_data(self) -> list[str]:
        """The wanted datasets boxlink has put nothing of on this node's disk yet (neither synch.down nor
        synch.lazy)."""
        return without_data(self.root, self.wanted)

    def refresh(self) -> list[str]:
        """Load every dataset whose verified generation (synch.down) is newer than the one served, or which
        boxlink has staged for a lazy start (synch.lazy) ahead of what is served.

        Returns the names switched. The previous generation stays in use by requests holding it.
        """
        with self._refreshing:
            return self._refresh()

    def _refresh(self) -> list[str]:
        switched = []
        for folder in NodeLayout(self.root).datasets():
            fresh = self._newer(folder)
            if fresh is None:
                continue
            with self._lock:
                self.loaded = {**self.loaded, folder.dataset: fresh}  # swap: readers see the old or new dict
            self.errors.pop(folder.dataset, None)
            switched.append(folder.dataset)
            log.info("serving dataset=%s generation=%d lazy=%s", folder.dataset, fresh.generation, fresh.lazy)
            if self.announces:  # boxlink holds a lazy start's fill until the node says it serves the generation
                try:
                    folder.mark_serving(fresh.generation, fresh.lazy)
                except OSError as exc:
                    log.warning("cannot write %s dataset=%s error=%s", SERVING, folder.dataset, exc)
        if self.rasters is not None:
            for name, ds in self.loaded.items():
                self.rasters.tend(DatasetDir(self.root, name), ds)
        return switched

    def _newer(self, folder: DatasetDir) -> LoadedDataset | None:
        name, current = folder.dataset, self.loaded.get(folder.dataset)
        down = folder.down_generation()
        try:
            if down is not None and folder.current_generation() == down:
                if current is None or current.generation != down or current.lazy:
                    return LoadedDataset.open(folder)
                return None
            lazy = folder.lazy_marker()
            if lazy and folder.is_staged(lazy["generation"]) and (current is None
                                                                 or current.generation < lazy["generation"]):
                return LoadedDataset.open_lazy(folder, lazy["generation"], lazy["bucket"], lazy["prefix"])
        except (TilerError, FormatError, OSError) as exc:
            if self.errors.get(name) != f"{exc.__class__.__name__}: {exc}":
                log.warning("load failed dataset=%s generation=%s error=%s", name, down, exc)
            self.errors[name] = f"{exc.__class__.__name__}: {exc}"
        return None

    def ready(self) -> tuple[bool, dict[str, str]]:
        missing = {name: self.waiting_for(name) for name in self.wanted if name not in self.loaded}
        missing.update(self.errors)
        return (not missing and bool(self.loaded)), missing

    def generations(self) -> dict[str, int]:
        return {name: ds.generation for name, ds in sorted(self.loaded.items())}
