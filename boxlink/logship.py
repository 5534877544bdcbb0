"""Ship the node's logs (``<root>/data/log/``) to ``s3://BUCKET/logs/<instance-id>/``.

- A *live* file (its name ends in ``.log``: still being written) goes to ``logs/<id>/<relative path>``,
  at most once every ``open_interval`` seconds and only if it changed (and once more at shutdown).
- Any other file is a *closed* (rolled) file: ``x.log.1``, ``x.log.2026-11-23``, ``x.log.gz``. Each is
  uploaded once, with its sha256 in the object's metadata. A ``RotatingFileHandler`` renames rolled
  files (``.1`` becomes ``.2``), so they are known by content: a sha256 already shipped is never shipped
  again. Their key drops the rotation number and adds when the file was closed and its sha256 prefix,
  ``logs/<id>/boxlink.log.20261123T130501Z-ab12cd34``: unique and sorted in time.

What was shipped is remembered in a small state file (written after each upload), so each closed file
is uploaded exactly once across restarts; a crash between an upload and its record re-sends the same
bytes to the same key, which leaves no duplicate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from boxlink.errors import BoxlinkError
from gigaformat.clock import compact, from_timestamp
from gigaformat.durable import write_atomic
from gigaformat.s3 import storage_error

log = logging.getLogger(__name__)

_ROTATION_NUMBER = re.compile(r"^(.*)\.(\d+)$")


@dataclass(frozen=True)
class ShipReport:
    uploaded: int
    bytes: int


def is_live(path: Path) -> bool:
    return path.name.endswith(".log")


def rolled_key(relative: str, mtime_ns: int, sha256: str) -> str:
    """The key (under ``logs/<id>/``) of a closed file: rotation number dropped, closing time and sha added."""
    match = _ROTATION_NUMBER.match(relative)
    stem = match.group(1) if match else relative
    stamp = compact(from_timestamp(mtime_ns / 1e9))
    return f"{stem}.{stamp}-{sha256[:8]}"


class LogShipper:
    """Uploads ``log_root``'s files for one node; ``state_path`` remembers what was shipped."""

    def __init__(self, client, bucket: str, instance_id: str, log_root: Path, state_path: Path,
                 open_interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.bucket = bucket
        self.prefix = f"logs/{instance_id}/"
        self.log_root = Path(log_root)
        self.state_path = Path(state_path)
        self.open_interval = open_interval
        self.clock = clock
        self._live_sent_at: dict[str, float] = {}
        self._state = self._load()

    def _load(self) -> dict:
        try:
            doc = json.loads(self.state_path.read_bytes())
        except (OSError, ValueError):
            doc = {}
        return {"closed": dict(doc.get("closed", {})), "seen": dict(doc.get("seen", {})),
                "live": dict(doc.get("live", {}))}

    def _save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_path, json.dumps(self._state, indent=0, sort_keys=True).encode())

    def ship(self, final: bool = False) -> ShipReport:
        """Upload what is due now (``final``: every changed live file too, at shutdown).

        Raises BoxlinkError if S3 refuses an upload; what was shipped before stays recorded.
        """
        uploaded, sent = 0, 0
        files = sorted(p for p in self.log_root.rglob("*") if p.is_file() and not p.name.startswith("."))
        closed_shas: set[str] = set()
        vanished = False
        for path in files:
            relative = path.relative_to(self.log_root).as_posix()
            try:
                nbytes = self._ship_live(path, relative, final) if is_live(path) else \
                    self._ship_closed(path, relative, closed_shas)
            except FileNotFoundError:
                vanished = True  # rotated away since the listing; the next pass sees its new name
                continue
            if nbytes is not None:
                uploaded, sent = uploaded + 1, sent + nbytes
        if not vanished:  # a full view of the folder: records of files gone for good can go
            self._forget_gone(files, closed_shas)
        return ShipReport(uploaded, sent)

    def _ship_closed(self, path: Path, relative: str, closed_shas: set[str]) -> int | None:
        st = path.stat()
        cached = self._state["seen"].get(relative)
        if cached and cached[:2] == [st.st_size, st.st_mtime_ns]:
            digest = cached[2]
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            self._state["seen"][relative] = [st.st_size, st.st_mtime_ns, digest]
        closed_shas.add(digest)
        if digest in self._state["closed"]:
            return None
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            return None  # changed under us: not closed after all; look again next pass
        key = self.prefix + rolled_key(relative, st.st_mtime_ns, digest)
        self._put(key, data, digest, relative)
        self._state["closed"][digest] = key
        self._save()
        return len(data)

    def _ship_live(self, path: Path, relative: str, final: bool) -> int | None:
        st = path.stat()
        if self._state["live"].get(relative, [None, None])[:2] == [st.st_size, st.st_mtime_ns]:
            return None  # unchanged since it was last shipped
        last = self._live_sent_at.get(relative)
        if not final and last is not None and self.clock() - last < self.open_interval:
            return None
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        self._put(self.prefix + relative, data, digest, relative)
        self._live_sent_at[relative] = self.clock()
        self._state["live"][relative] = [st.st_size, st.st_mtime_ns, digest]
        self._save()
        return len(data)

    def _put(self, key: str, data: bytes, digest: str, relative: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="text/plain",
                                   Metadata={"sha256": digest, "source": relative})
        except (ClientError, BotoCoreError) as exc:
            raise BoxlinkError(str(storage_error(exc, f"cannot upload {relative} to s3://{self.bucket}/{key}",
                                                 self.bucket))) from None
        log.info("log shipped file=%s key=%s bytes=%d", relative, key, len(data))

    def _forget_gone(self, files: list[Path], closed_shas: set[str]) -> None:
        """Drop records of files no longer here (a rolled file deleted by rotation never comes back)."""
        present = {p.relative_to(self.log_root).as_posix() for p in files}
        state = self._state
        before = (len(state["closed"]), len(state["seen"]), len(state["live"]))
        state["closed"] = {sha: key for sha, key in state["closed"].items() if sha in closed_shas}
        state["seen"] = {rel: v for rel, v in state["seen"].items() if rel in present}
        state["live"] = {rel: v for rel, v in state["live"].items() if rel in present}
        if before != (len(state["closed"]), len(state["seen"]), len(state["live"])):
            self._save()
