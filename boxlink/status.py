"""Per-dataset status file ``<root>/data/<dataset>/boxlink.status.json``: what boxlink last saw and did.

``run`` and ``sync`` update it after every manifest check and every pass; ``boxlink status`` reads it
beside the generation actually switched in on disk.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from gigaformat.clock import utc_now_iso
from gigaformat.durable import write_atomic
from gigaformat.layout import DatasetDir

STATUS = "boxlink.status.json"


def status_path(folder: DatasetDir) -> Path:
    return folder.path / STATUS


def read_status(folder: DatasetDir) -> dict:
    try:
        doc = json.loads(status_path(folder).read_bytes())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def update_status(folder: DatasetDir, **fields) -> dict:
    """Merge ``fields`` into the status file (atomically) and return the new document."""
    doc = read_status(folder)
    doc.update(fields, dataset=folder.dataset, updated=utc_now_iso(), updated_time=time.time())
    folder.path.mkdir(parents=True, exist_ok=True)
    write_atomic(status_path(folder), json.dumps(doc, indent=1, sort_keys=True).encode())
    return doc


@dataclass(frozen=True)
class DatasetStatus:
    """One row of ``boxlink status``."""

    dataset: str
    active: bool  # the render server asked for it (synch.active)
    local_generation: int | None  # named by synch.down: switched in and verified
    remote_generation: int | None  # the manifest's, as last seen
    last_error: str | None
    last_check: str | None
    last_sync: str | None

    @property
    def lag(self) -> int | None:
        if self.remote_generation is None:
            return None
        return self.remote_generation - (self.local_generation or 0)

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "active": self.active, "local_generation": self.local_generation,
                "remote_generation": self.remote_generation, "lag": self.lag, "last_error": self.last_error,
                "last_check": self.last_check, "last_sync": self.last_sync}


def dataset_status(folder: DatasetDir) -> DatasetStatus:
    doc = read_status(folder)
    return DatasetStatus(folder.dataset, folder.is_active(), folder.down_generation(), doc.get("remote_generation"),
                         doc.get("last_error"), doc.get("last_check"), doc.get("last_sync"))
