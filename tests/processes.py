"""Start and stop real server processes in tests: free ports, readiness with a deadline, stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def serve_in_thread(app, host: str, what: str) -> Iterator[int]:
    """``app`` (ASGI) served by uvicorn in a thread on a free port of ``host``, stopped on the way out."""
    import uvicorn

    port = free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, what)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class Process:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.popen = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                      env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the group, wait, then SIGKILL; returns the exit code."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        self.log.close()
        return self.popen.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_tiler_serve(root: Path, datasets: str, host: str, port: int, log_path: Path, *extra: str,
                      env: dict[str, str] | None = None, timeout: float = 60.0) -> Process:
    """``tiler serve`` on host:port, returned once /healthz answers."""
    args = [str(BIN / "tiler"), "serve", "--root", str(root), "--datasets", datasets, "--host", host,
            "--port", str(port), "--reload-seconds", "0.2", *extra]
    process = Process(args, log_path, env)
    try:
        wait_for(lambda: process.alive() and http_ok(f"http://{host}:{port}/healthz"), timeout, "tiler serve")
    except AssertionError:
        process.stop()
        raise AssertionError(f"tiler serve did not start:\n{process.output()[-3000:]}") from None
    return process
