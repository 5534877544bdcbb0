"""``<root>/run/status.json``: what node-bootstrap is doing, rewritten by it on every change, read by
``node-bootstrap status`` (and by the cold-start bench for its phase timestamps)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from gigaformat.durable import write_atomic

# The epoch reported as the node's "started": set by the local launcher (its launch time) and kept across
# a re-exec of a fresh bootstrap, so the phases are measured from the launch.
STARTED_VARIABLE = "GIGATILE_BOOTSTRAP_STARTED"


class StatusBoard:
    """The status document of one node-bootstrap process; every change is written at once."""

    def __init__(self, path: Path, **fields: Any):
        self.path = path
        self._lock = threading.Lock()
        self.doc: dict[str, Any] = {"pid": os.getpid(), "state": "starting", "error": None, "phases": {},
                                    "children": [], **fields}
        self.write()

    def set(self, **fields: Any) -> None:
        with self._lock:
            self.doc.update(fields)
            self._write()

    def phase(self, name: str, at: float | None = None) -> None:
        """Record that phase ``name`` ended at ``at`` (epoch seconds; default now)."""
        with self._lock:
            self.doc["phases"][name] = at if at is not None else time.time()
            self._write()

    def write(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        self.doc["updated"] = time.time()
        write_atomic(self.path, json.dumps(self.doc, indent=1).encode() + b"\n")


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def runs_command(pid: int | None, marker: str) -> bool:
    """True if ``pid`` still runs a command line containing ``marker`` (not a recycled pid)."""
    if not pid:
        return False
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _exit_text(last: dict[str, Any] | None, now: float) -> str:
    if not last:
        return "-"
    how = f"signal {signal.Signals(-last['code']).name}" if last.get("code", 0) < 0 else f"code {last.get('code')}"
    return f"{how} {_duration(now - last.get('at', now))} ago"


def render_status(doc: dict[str, Any], now: float | None = None) -> str:
    """A short table: the node, then one line per child (pid, state, restarts, uptime, last exit)."""
    now = now or time.time()
    alive = pid_alive(doc.get("pid"))
    until = now if alive else doc.get("updated", now)
    state = doc.get("state", "?")
    if not alive and state not in ("stopped", "failed", "updated"):
        state = f"{state} (node-bootstrap is gone: stale status)"
    lines = [f"node {doc.get('instance_id', '?')} {doc.get('address', '?')}:{doc.get('port', '?')}  "
             f"release {doc.get('release') or '-'}  state {state}  pid {doc.get('pid')}  "
             f"up {_duration(until - doc['started']) if doc.get('started') else '-'}"]
    if doc.get("error"):
        lines.append(f"error: {doc['error']}")
    rows = [("child", "pid", "state", "restarts", "uptime", "last exit")]
    for child in doc.get("children", []):
        uptime = now - child["started"] if child.get("started") and child.get("state") == "running" else None
        rows.append((child["name"], str(child.get("pid") or "-"), child.get("state", "?"),
                     str(child.get("restarts", 0)), _duration(uptime), _exit_text(child.get("last_exit"), now)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
