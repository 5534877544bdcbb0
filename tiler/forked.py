"""Worker processes forked from ``tiler serve``'s parent, which has imported the app and bound the socket once.

uvicorn's own ``--workers`` spawns each worker (multiprocessing ``spawn``): every one starts a fresh
interpreter and imports tiler's CLI, uvicorn, starlette, numpy and the render core again (~1.2 s of CPU per
worker when a node starts, where boxlink and the local S3 want the same cores). A forked worker inherits
all of that and only builds the app (``create_app``). Forking is safe only while the parent has one thread:
``ForkedWorkers`` checks it before every fork, so whatever needs threads (the heartbeat) runs in a process of
its own (``fork_helper``), and the parent never starts a thread.

The parent's loop does what uvicorn's multiprocess supervisor does that a node relies on: a worker that
exits is forked again (one whose start failed, exit code 3, stops the parent instead: it would fail again),
SIGTERM/SIGINT stop every worker (SIGTERM, then SIGKILL after ``grace`` seconds) and return.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable

import uvicorn
from uvicorn.config import STARTUP_FAILURE

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
RESTART_DELAY_SECONDS = 0.5  # a worker that keeps crashing is not forked in a tight loop


class WorkerStartFailure(RuntimeError):
    """A worker could not start (its app, or the socket): forking another would fail the same way."""


def _fork(run: Callable[[], int]) -> int:
    """Fork; the child runs ``run`` and exits with its code (never returns into the parent's code)."""
    if threading.active_count() != 1:  # a lock held by another thread at fork time stays held in the child
        raise RuntimeError(f"fork with {threading.active_count()} threads: "
                           f"{', '.join(t.name for t in threading.enumerate())}")
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):  # the parent's handlers are the parent's business
            signal.signal(sig, signal.SIG_DFL)
        code = run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def fork_helper(run: Callable[[], int]) -> int:
    """A process of the server's own (e.g. its heartbeat) running ``run``; SIGTERM is its stop signal."""
    return _fork(run)


class ForkedWorkers:
    """``count`` uvicorn servers (of ``start``'s config, on its socket), each in a process forked from this one."""

    def __init__(self, count: int, grace: float = 10.0, on_exit: Callable[[int], None] | None = None):
        self.count = count
        self.grace = grace
        self.on_exit = on_exit  # called with the pid of each worker that ended (its metrics files are dropped)
        self.config: uvicorn.Config | None = None
        self.sock: socket.socket | None = None
        self.pids: set[int] = set()
        self.helpers: dict[int, str] = {}  # pid -> name: processes whose exit stops the server
        self.stopping = False

    def _serve(self) -> int:
        uvicorn.Server(self.config).run(sockets=[self.sock])
        return 0

    def start(self, config: uvicorn.Config, sock: socket.socket) -> None:
        self.config, self.sock = config, sock
        for _ in range(self.count):
            self.pids.add(_fork(self._serve))
        log.debug("workers forked pids=%s", sorted(self.pids))

    def watch(self, pid: int, name: str) -> None:
        """Stop the server if process ``pid`` (a helper) exits."""
        self.helpers[pid] = name

    def stop(self, *_: object) -> None:
        """Ask the loop in ``run`` to stop (a signal handler)."""
        self.stopping = True

    def run(self) -> None:
        """Until ``stop``: re-fork workers that exit; then stop them all. Raises WorkerStartFailure when one
        could not start, RuntimeError when a helper exits."""
        try:
            while not self.stopping:
                self._reap_and_restart()
                time.sleep(POLL_SECONDS)
        finally:
            self.terminate(set(self.pids))

    def _reap_and_restart(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if pid in self.helpers:
                raise RuntimeError(f"{self.helpers.pop(pid)} (pid {pid}) exited with code {code}")
            if pid not in self.pids:
                continue
            self.pids.discard(pid)
            if self.on_exit is not None:
                self.on_exit(pid)
            if self.stopping:
                continue
            if code == STARTUP_FAILURE:
                raise WorkerStartFailure(f"worker {pid} failed to start (exit {code})")
            log.warning("worker exited pid=%d code=%d; forking another", pid, code)
            time.sleep(RESTART_DELAY_SECONDS)
            self.pids.add(_fork(self._serve))

    def terminate(self, pids: set[int], grace: float | None = None) -> None:
        """SIGTERM ``pids``, SIGKILL those still there after ``grace`` seconds, reap them."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + (self.grace if grace is None else grace)
        left = set(pids)
        while left:
            for pid in list(left):
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        continue
                left.discard(pid)
            if not left:
                break
            if time.monotonic() > deadline:
                log.warning("processes did not stop in %.0f s pids=%s; killing", self.grace, sorted(left))
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                for pid in left:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, 0)
                break
            time.sleep(0.02)
        self.pids -= pids
