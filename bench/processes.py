"""Child processes stopped by PID, waiting with a deadline, free ports, one HTTP client for polls, and process memory
from /proc."""

from __future__ import annotations

import atexit
import functools
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from bench.progress import console


class Children:
    """Child processes, each in its own session; all stopped by PID when the ``with`` block ends, however."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.popens: list[subprocess.Popen] = []

    def __enter__(self) -> Children:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        for popen in reversed(self.popens):
            self.stop(popen)

    def start(self, args: Sequence[str], log_name: str, **kwargs) -> subprocess.Popen:
        with (self.log_dir / log_name).open("ab") as log:
            popen = subprocess.Popen([str(a) for a in args], stdout=kwargs.pop("stdout", log), stderr=log,
                                     start_new_session=True, **kwargs)
        self.popens.append(popen)
        return popen

    def run(self, args: Sequence[str], log_name: str, timeout: float, **kwargs) -> float:
        """Run to the end; return its wall seconds. RuntimeError if it fails or runs past ``timeout`` s."""
        started = time.perf_counter()
        popen = self.start(args, log_name, **kwargs)
        try:
            code = popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(popen)
            raise RuntimeError(f"{args[0]} ran past {timeout:.0f} s; see {self.log_dir / log_name}") from None
        if code != 0:
            raise RuntimeError(f"{args[0]} {args[1]} failed (exit {code}); see {self.log_dir / log_name}")
        return time.perf_counter() - started

    def stop(self, popen: subprocess.Popen, grace: float = 10.0) -> None:
        """SIGTERM the child's own process group (its PID), wait ``grace`` s, then SIGKILL it."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if popen.poll() is not None:
                break
            try:
                os.killpg(popen.pid, sig)
                popen.wait(wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        if popen in self.popens:
            self.popens.remove(popen)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``condition`` until it is true; RuntimeError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


@functools.cache
def http_client() -> httpx.Client:
    """One client for the benches' polls: ``httpx.get()`` makes a client per call, whose TLS context alone
    took 60-100 ms of CPU on 2 cores, beside what is being measured (thread-safe; closed at exit)."""
    client = httpx.Client(timeout=30)
    atexit.register(client.close)
    return client


def http_status(url: str) -> int | None:
    try:
        return http_client().get(url, timeout=2.0).status_code
    except httpx.HTTPError:
        return None


# --- process memory -------------------------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children read from /proc/<pid>/task/*/children)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def _rollup(pid: int) -> dict[str, int]:
    """Fields of /proc/<pid>/smaps_rollup in kB (empty if the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return {}
    return {parts[0].rstrip(":"): int(parts[1]) for parts in (line.split() for line in lines[1:]) if len(parts) >= 2}


def memory_of(pid: int) -> dict:
    """RSS and PSS (MB, 10^6 bytes) summed over ``pid`` and its descendants, with each process listed."""
    rows = []
    for each in descendants(pid):
        fields = _rollup(each)
        if not fields:
            continue
        try:
            name = Path(f"/proc/{each}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
        except OSError:
            name = "?"
        fields_mb = {k.lower() + "_mb": fields.get(k, 0) * 1024 / 1e6
                     for k in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Anonymous")}
        rows.append({"pid": each, "cmd": name.strip(), **fields_mb})
    return {"rss_mb": sum(r["rss_mb"] for r in rows), "pss_mb": sum(r["pss_mb"] for r in rows),
            "pss_anon_mb": sum(r["pss_anon_mb"] for r in rows), "pss_file_mb": sum(r["pss_file_mb"] for r in rows),
            "processes": rows}


def memory_row(process: str, when: str, pid: int) -> dict:
    """One line of a report's memory table: RSS and PSS sums (MB) of ``pid``'s process tree at ``when``."""
    found = memory_of(pid)
    return {"process": process, "when": when, "rss_mb": found["rss_mb"], "pss_mb": found["pss_mb"],
            "processes": len(found["processes"])}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM (the suite's time bound) takes the same way out as Ctrl-C: ``finally`` blocks and ``with``
    blocks run, so every child is stopped by PID."""
    signal.signal(signal.SIGTERM, _interrupt)


def run_and_report(run: Callable[[object], dict], report: Callable[[dict], None], settings: object,
                   stopped: str = "every child process was stopped", fail_on_bars: bool = False) -> int:
    """A bench's ``main``: run it bounded by SIGTERM, print its report. Exit 1 on a RuntimeError (its message
    printed), 130 when interrupted, 3 when ``fail_on_bars`` and a bar failed, else 0."""
    stop_on_sigterm()
    try:
        doc = run(settings)
    except RuntimeError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print(f"interrupted: {stopped}")
        return 130
    report(doc)
    return 3 if fail_on_bars and any(b["pass"] is False for b in doc["bars"]) else 0


class TreePeak:
    """The peak memory of a process tree while it runs: a thread sums VmRSS over the process and all its
    descendants every ``interval`` s and keeps the largest sum, and the largest single VmHWM seen (a process's
    own peak, which a sample can miss). ``peak_mb`` is the larger of the two."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.sum_mb = self.hwm_mb = 0.0
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return max(self.sum_mb, self.hwm_mb)

    def _sample(self) -> None:
        while not self._done.is_set():
            total = 0.0
            for pid in descendants(self.pid):
                fields = _status_kb(pid)
                total += fields.get("VmRSS", 0) * 1024 / 1e6
                self.hwm_mb = max(self.hwm_mb, fields.get("VmHWM", 0) * 1024 / 1e6)
            self.sum_mb = max(self.sum_mb, total)
            self.samples += 1
            self._done.wait(self.interval)


def _status_kb(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status (empty if the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        name, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            found[name] = int(value.split()[0])
    return found
