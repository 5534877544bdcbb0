"""The demo's hold on its work folder, and what it tells the world about itself.

- ``demo.lock``: an exclusive ``flock`` for as long as a demo runs from the folder (the kernel drops it when
  the demo dies, however it dies). It holds the demo's pid. A second demo that cannot take it touches nothing.
- ``demo.json``: what runs and where (pids, viewer, S3 endpoint, node roots), written by the lock's holder;
  found without a holder, it is what a killed demo left running, and the next demo stops that first.
- ``env``: the demo's S3 settings, for ``source demo-work/env`` before running the CLIs against it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

LOCK, RECORD, ENV = "demo.lock", "demo.json", "env"


@dataclass
class Record:
    """``demo.json``: the running demo."""

    pid: int
    started: float  # epoch
    work: str
    viewer: str
    bucket: str
    state: str = "starting"  # starting, running, stopping
    s3_endpoint: str = ""
    s3_pid: int = 0
    proxy_pid: int = 0
    node_roots: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)  # http://address:port of each render node

    @classmethod
    def read(cls, path: Path) -> Record | None:
        try:
            doc = json.loads(path.read_text())
            return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return None


def s3_variables(endpoint: str, access_key: str, secret_key: str, region: str, bucket: str) -> dict[str, str]:
    """What a shell needs to run every CLI against the demo's S3 (AWS's chain, and GIGATILE_BUCKET)."""
    return {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_DEFAULT_REGION": region, "GIGATILE_BUCKET": bucket}


def write_env(path: Path, variables: dict[str, str]) -> None:
    """``path`` as a file a shell can ``source``: one ``export NAME=value`` a line."""
    lines = ["# the S3 of `make demo` (written by scripts/demo.py): source it, then run the CLIs"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


class Session:
    """One demo's claim on ``work``: ``acquire()`` takes the lock or says who holds it."""

    def __init__(self, work: Path):
        self.work = work
        self.lock_path, self.record_path, self.env_path = work / LOCK, work / RECORD, work / ENV
        self._fd: int | None = None
        self.record: Record | None = None

    def acquire(self) -> bool:
        """Take the lock (without waiting); False if another demo holds it. Creates nothing else."""
        self.work.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder_pid(self) -> int | None:
        try:
            return int(self.lock_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def left_behind(self) -> Record | None:
        """With the lock held: the record of a demo that died without cleaning up (None if there is none)."""
        record = Record.read(self.record_path)
        return record if record is not None and record.pid != os.getpid() else None

    def save(self, record: Record) -> None:
        """Write ``demo.json`` (only the lock's holder does)."""
        assert self._fd is not None, "save() without the lock"
        self.record = record
        tmp = self.record_path.with_name(RECORD + ".tmp")
        tmp.write_text(json.dumps(asdict(record), indent=1) + "\n")
        os.replace(tmp, self.record_path)

    def release(self) -> None:
        """Remove the ``demo.json`` this demo wrote and drop the lock (the lock file stays: the next demo
        locks it)."""
        if self._fd is None:
            return
        if self.record is not None:
            self.record_path.unlink(missing_ok=True)
            self.record = None
        os.close(self._fd)
        self._fd = None

    def refusal(self) -> str:
        """What a second demo says: that a demo runs, where, and how to stop it."""
        record = Record.read(self.record_path)
        pid = record.pid if record else self.holder_pid()
        since = time.strftime("%H:%M:%S", time.localtime(record.started)) if record else "a moment ago"
        state = "is starting" if record is None or record.state == "starting" else f"is {record.state}"
        lines = [f"a demo {state} from {self.work} (pid {pid}, since {since}); this one stops here and "
                 "touches nothing of it."]
        if record is not None:
            lines.append(f"  the viewer     {record.viewer}")
            if record.s3_endpoint:
                lines.append(f"  its S3         {record.s3_endpoint}, bucket {record.bucket} "
                             f"(source {self.env_path})")
        lines.append(f"  to stop it     Ctrl-C in its terminal, or: make demo-stop   (or: kill {pid})")
        lines.append("  to change it   make demo-update")
        return "\n".join(lines)


def stop_holder(session: Session, timeout: float = 120.0) -> str:
    """SIGTERM the demo holding ``session``'s lock and wait until it let go; returns what happened."""
    pid = session.holder_pid()
    if pid is None or session.acquire():
        session.release()
        return f"no demo is running from {session.work}"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if session.acquire():
            session.release()
            return f"stopped the demo (pid {pid}) running from {session.work}"
        time.sleep(0.2)
    raise RuntimeError(f"the demo (pid {pid}) did not stop within {timeout:.0f} s; kill it with: kill -9 {pid}")
