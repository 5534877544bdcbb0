"""The datasets a render server serves, each behind an atomic swap to newer verified generations."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from gigaformat.errors import FormatError
from gigaformat.layout import DatasetDir, NodeLayout
from tiler.dataset import LoadedDataset
from tiler.errors import NotFound, NotReady, TilerError

log = logging.getLogger(__name__)


@dataclass
class Catalog:
    root: Path
    wanted: tuple[str, ...] = ()  # datasets this server asks boxlink for (synch.active)
    loaded: dict[str, LoadedDataset] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request_wanted(self) -> None:
        """Write synch.active for every wanted dataset: boxlink starts replicating them."""
        for name in self.wanted:
            DatasetDir(self.root, name).mark_active()

    def get(self, name: str) -> LoadedDataset:
        found = self.loaded.get(name)
        if found is None:
            if name in self.wanted:  # asked for, still replicating or loading: come back, not "gone"
                raise NotReady(f"dataset {name!r} is not loaded yet; retry shortly")
            raise NotFound(f"unknown dataset {name!r}")
        return found

    def refresh(self) -> list[str]:
        """Load every dataset whose verified generation (synch.down) is newer than the one served.

        Returns the names switched. The previous generation stays in use by requests holding it.
        """
        switched = []
        folders = {d.dataset: d for d in NodeLayout(self.root).datasets()}
        for name in sorted(set(folders)):
            folder = folders[name]
            down = folder.down_generation()
            current = self.loaded.get(name)
            if down is None or (current is not None and current.generation == down):
                continue
            if folder.current_generation() != down:
                continue  # boxlink has not switched yet; wait for both to agree
            try:
                fresh = LoadedDataset.open(folder)
            except (TilerError, FormatError, OSError) as exc:
                self.errors[name] = f"{exc.__class__.__name__}: {exc}"
                log.warning("load failed dataset=%s generation=%s error=%s", name, down, exc)
                continue
            with self._lock:
                self.loaded = {**self.loaded, name: fresh}  # swap: readers see the old or new dict
            self.errors.pop(name, None)
            switched.append(name)
            log.info("serving dataset=%s generation=%d", name, fresh.generation)
        return switched

    def ready(self) -> tuple[bool, dict[str, str]]:
        missing = {name: "not loaded yet" for name in self.wanted if name not in self.loaded}
        missing.update(self.errors)
        return (not missing and bool(self.loaded)), missing

    def generations(self) -> dict[str, int]:
        return {name: ds.generation for name, ds in sorted(self.loaded.items())}
