"""Supervision of a node's programs (Zoomii's ``screen -c render.rc``, with restarts).

Each child runs in its own session (so its whole process group, e.g. uvicorn's workers, can be ended);
its stdout and stderr are pumped line by line into ``<log_dir>/<name>.console.log``, rolled by size. A
child that exits is restarted after a delay growing by ``RestartPolicy`` (reset once it stayed up
``reset_after`` seconds); whatever is left of its process group is killed first, so a SIGKILLed server's
workers cannot keep its port. On stop every child gets SIGTERM, and SIGKILL (its group) after ``grace``.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bootstrap.node.status import StatusBoard

log = logging.getLogger(__name__)

MB = 1 << 20


@dataclass(frozen=True)
class RestartPolicy:
    """Delay before restart number n of a crashing child: ``initial * factor**(n-1)``, at most ``maximum``."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    reset_after: float = 30.0  # a child that ran this long counts as healthy: its next crash starts over

    def delay(self, failures: int) -> float:
        return min(self.maximum, self.initial * self.factor ** max(failures - 1, 0))


@dataclass(frozen=True)
class LogPolicy:
    max_bytes: int = 10 * MB
    backups: int = 5


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None


@dataclass
class Child:
    """One supervised program and what happened to it."""

    spec: ChildSpec
    console: logging.Logger
    popen: subprocess.Popen | None = None
    state: str = "starting"  # starting, running, backoff, stopping, stopped
    restarts: int = 0
    failures: int = 0  # crashes in a row (reset by a long enough run)
    started_at: float | None = None  # epoch
    started_mono: float = 0.0
    start_after: float = 0.0  # monotonic
    last_exit: dict[str, Any] | None = None
    pump: threading.Thread | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        return {"name": self.spec.name, "pid": self.popen.pid if self.popen and self.state == "running" else None,
                "state": self.state, "restarts": self.restarts, "started": self.started_at,
                "last_exit": self.last_exit, "command": self.spec.argv}


def console_logger(log_dir: Path, name: str, policy: LogPolicy) -> logging.Logger:
    """A logger writing bare lines to ``<log_dir>/<name>.console.log``, rolled by size."""
    logger = logging.getLogger(f"bootstrap.console.{name}.{id(log_dir)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(log_dir / f"{name}.console.log", maxBytes=policy.max_bytes,
                                                   backupCount=policy.backups)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger


def _pump(stream: IO[bytes], console: logging.Logger) -> None:
    with stream:
        for line in iter(stream.readline, b""):
            console.info(line.decode("utf-8", errors="replace").rstrip("\n"))


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    """Runs ``specs`` until ``stop`` is set; keeps ``board`` (status.json) up to date."""

    def __init__(self, specs: list[ChildSpec], log_dir: Path, board: StatusBoard,
                 policy: RestartPolicy = RestartPolicy(), logs: LogPolicy = LogPolicy(), grace: float = 10.0,
                 poll_seconds: float = 0.1):
        self.children = [Child(spec, console_logger(log_dir, spec.name, logs)) for spec in specs]
        self.board = board
        self.policy = policy
        self.grace = grace
        self.poll_seconds = poll_seconds

    # -- one child -------------------------------------------------------------------------------
    def _start(self, child: Child) -> None:
        spec = child.spec
        try:
            child.popen = subprocess.Popen(spec.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, env=spec.env, cwd=spec.cwd,
                                           start_new_session=True)
        except OSError as exc:  # e.g. the release lacks the program: counts as a crash, retried with backoff
            child.console.info(f"--- node-bootstrap: cannot start {spec.argv[0]}: {exc}")
            log.error("start failed child=%s error=%r", spec.name, str(exc))
            child.popen = None
            self._after_exit(child, code=127, ran=0.0)
            return
        child.state = "running"
        child.started_at, child.started_mono = time.time(), time.monotonic()
        child.pump = threading.Thread(target=_pump, args=(child.popen.stdout, child.console),
                                      name=f"pump-{spec.name}", daemon=True)
        child.pump.start()
        child.console.info(f"--- node-bootstrap: started pid={child.popen.pid} restarts={child.restarts}")
        log.info("started child=%s pid=%d restarts=%d", spec.name, child.popen.pid, child.restarts)

    def _reap(self, child: Child) -> bool:
        """If the child exited: clean up after it and return True."""
        popen = child.popen
        if child.state not in ("running", "stopping") or popen is None or popen.poll() is None:
            return False
        _signal_group(popen.pid, signal.SIGKILL)  # what the child left behind (workers) must not live on
        if child.pump is not None:
            child.pump.join(timeout=2)
        ran = time.monotonic() - child.started_mono
        child.console.info(f"--- node-bootstrap: exited pid={popen.pid} code={popen.returncode} ran={ran:.1f}s")
        self._after_exit(child, popen.returncode, ran)
        return True

    def _after_exit(self, child: Child, code: int, ran: float) -> None:
        child.last_exit = {"code": code, "at": time.time(), "ran_seconds": round(ran, 3)}
        if child.state == "stopping":
            child.state = "stopped"
            return
        child.failures = 1 if ran >= self.policy.reset_after else child.failures + 1
        delay = self.policy.delay(child.failures)
        child.state, child.start_after = "backoff", time.monotonic() + delay
        log.warning("child exited child=%s code=%s ran=%.1f restart_in=%.2f", child.spec.name, code, ran, delay)

    # -- all of them -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        for child in self.children:
            self._start(child)
        self._publish()
        last_write = time.monotonic()
        while not stop.wait(self.poll_seconds):
            changed = False
            for child in self.children:
                if self._reap(child):
                    changed = True
                if child.state == "backoff" and time.monotonic() >= child.start_after and not stop.is_set():
                    child.restarts += 1
                    self._start(child)
                    changed = True
            if changed or time.monotonic() - last_write > 5.0:
                self._publish()
                last_write = time.monotonic()
        self.stop_all()

    def stop_all(self) -> None:
        """SIGTERM every running child, SIGKILL the groups still there after ``grace`` seconds."""
        running = [c for c in self.children if c.popen is not None and c.popen.poll() is None]
        for child in self.children:
            child.state = "stopping" if child in running else "stopped"
        self.board.set(state="stopping")
        self._publish()
        for child in running:
            log.info("stopping child=%s pid=%d", child.spec.name, child.popen.pid)
            with contextlib.suppress(ProcessLookupError):
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and any(c.popen.poll() is None for c in running):
            time.sleep(0.05)
        for child in running:
            if child.popen.poll() is None:
                log.warning("child did not stop in %.0fs child=%s pid=%d; killing", self.grace, child.spec.name,
                            child.popen.pid)
                _signal_group(child.popen.pid, signal.SIGKILL)
                child.popen.wait(5)
            self._reap(child)
        self._publish()

    def _publish(self) -> None:
        self.board.set(children=[c.row() for c in self.children])
