"""The verified-objects ledger: which files under ``objects/`` boxlink itself downloaded and checked.

One JSON line per object, appended right after the verified file is renamed into place:
``{"key", "size", "sha256", "ino", "mtime_ns", "ctime_ns"}``. On a later start an object counts as
verified only if the ledger names it with the sha256 the manifest expects *and* the file on disk still
has the recorded inode, size, mtime and ctime (which no one can set back after a write); anything else
is hashed again (or fetched again). So a restart never re-hashes
gigabytes, and a file boxlink did not write and check itself is never trusted on size and mtime alone.

A torn last line (a crash mid-append) is ignored. ``compact`` rewrites the file atomically.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from boxlink.errors import disk_error
from gigaformat.durable import write_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    key: str
    size: int
    sha256: str
    ino: int
    mtime_ns: int
    ctime_ns: int

    def matches_file(self, path: Path) -> bool:
        try:
            st = path.stat()
        except OSError:
            return False
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) == \
            (self.ino, self.size, self.mtime_ns, self.ctime_ns)


class Ledger:
    """The ledger of one dataset's ``objects/`` folder, kept at ``path``."""

    def __init__(self, path: Path, objects: Path):
        self.path = Path(path)
        self.objects = Path(objects)
        self.entries: dict[str, Entry] = {}
        self._lock = threading.Lock()  # downloads record from several threads
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                doc = json.loads(line)
                entry = Entry(str(doc["key"]), int(doc["size"]), str(doc["sha256"]), int(doc["ino"]),
                              int(doc["mtime_ns"]), int(doc["ctime_ns"]))
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a crash mid-append
            self.entries[entry.key] = entry

    def is_verified(self, key: str, size: int, sha256: str) -> bool:
        """True if ``objects/<key>`` is the file boxlink verified with this size and sha256, unchanged since."""
        entry = self.entries.get(key)
        return (entry is not None and entry.size == size and entry.sha256 == sha256
                and entry.matches_file(self.objects / key))

    def holds(self, key: str) -> bool:
        """True if ``objects/<key>`` is a file boxlink verified (against whatever the manifest said), unchanged."""
        entry = self.entries.get(key)
        return entry is not None and entry.matches_file(self.objects / key)

    def record(self, key: str, sha256: str) -> None:
        """Note that ``objects/<key>`` (already in place) was verified to have ``sha256``."""
        st = (self.objects / key).stat()
        entry = Entry(key, st.st_size, sha256, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        line = json.dumps(entry.__dict__, separators=(",", ":")) + "\n"
        with self._lock:
            self.entries[key] = entry
            try:
                with self.path.open("a") as handle:
                    handle.write(line)
            except OSError as exc:  # a full disk here too is the operator's to fix, in one line
                raise disk_error(exc, self.path) from None

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)

    def compact(self) -> None:
        """Rewrite the ledger with the entries whose files still exist unchanged."""
        self.entries = {k: e for k, e in self.entries.items() if e.matches_file(self.objects / k)}
        body = "".join(json.dumps(e.__dict__, separators=(",", ":")) + "\n" for e in self.entries.values())
        write_atomic(self.path, body.encode())
        log.debug("ledger compacted path=%s entries=%d", self.path, len(self.entries))
