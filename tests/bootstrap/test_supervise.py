"""The supervisor with small stand-in programs: restarts with backoff, clean stops, process groups,
rolled console logs, and the status call."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bootstrap.node.status import StatusBoard, pid_alive, read_status
from bootstrap.node.supervise import ChildSpec, LogPolicy, RestartPolicy, Supervisor
from gigaformat.layout import NodeLayout
from tests.processes import BIN, wait_for

PY = sys.executable


def program(code: str) -> list[str]:
    return [PY, "-c", code]


class Running:
    """A Supervisor running in a thread over ``specs``, with its status board in ``root``."""

    def __init__(self, root: Path, specs: list[ChildSpec], **options):
        self.layout = NodeLayout(root)
        self.board = StatusBoard(self.layout.status_path, started=time.time())
        self.supervisor = Supervisor(specs, self.layout.log_dir, self.board, poll_seconds=0.02, **options)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.supervisor.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def child(self, name: str) -> dict:
        doc = read_status(self.layout.status_path) or {}
        return next((c for c in doc.get("children", []) if c["name"] == name), {})

    def console(self, name: str) -> str:
        path = self.layout.log_dir / f"{name}.console.log"
        return path.read_text() if path.exists() else ""

    def finish(self, timeout: float = 15) -> float:
        began = time.monotonic()
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the supervisor did not stop"
        return time.monotonic() - began


@pytest.fixture
def run(tmp_path):
    started: list[Running] = []

    def start(specs, **options) -> Running:
        started.append(Running(tmp_path / "node", specs, **options))
        return started[-1]

    yield start
    for each in started:
        each.finish()


def test_restart_policy_grows_and_caps():
    policy = RestartPolicy(initial=0.5, factor=2, maximum=30)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 7, 50)] == [0.5, 1.0, 2.0, 4.0, 30.0, 30.0]


def test_a_child_killed_with_sigkill_is_restarted(run):
    node = run([ChildSpec("render", program("import time; print('serving', flush=True); time.sleep(60)"))],
               policy=RestartPolicy(initial=0.2))
    wait_for(lambda: node.child("render").get("pid") and "serving" in node.console("render"), 10, "the child")
    first = node.child("render")["pid"]
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: node.child("render").get("restarts") == 1 and node.child("render").get("pid"), 10, "restart")
    row = node.child("render")
    assert row["pid"] != first and pid_alive(row["pid"]) and row["state"] == "running"
    assert row["last_exit"]["code"] == -signal.SIGKILL
    wait_for(lambda: node.console("render").count("serving") == 2, 5, "the second run's output")


def test_a_crashing_child_is_restarted_later_each_time(run):
    began = time.monotonic()
    node = run([ChildSpec("boxlink", program("raise SystemExit(3)"))],
               policy=RestartPolicy(initial=0.1, factor=2, maximum=10))
    wait_for(lambda: node.child("boxlink").get("restarts", 0) >= 3, 10, "three restarts")
    assert time.monotonic() - began >= 0.1 + 0.2 + 0.4
    assert node.child("boxlink")["last_exit"]["code"] == 3
    assert node.child("boxlink")["restarts"] <= 4  # the next waits 0.8 s more


def test_a_child_that_stayed_up_is_restarted_quickly_again(run):
    node = run([ChildSpec("render", program("import time; time.sleep(0.3); raise SystemExit(1)"))],
               policy=RestartPolicy(initial=0.05, factor=100, maximum=60, reset_after=0.25))
    wait_for(lambda: node.child("render").get("restarts", 0) >= 3, 5, "three quick restarts")


def test_clean_stop_sends_sigterm_and_waits_for_the_child(run):
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (print('draining', flush=True), sys.exit(0)))\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n")
    node = run([ChildSpec("render", program(code))])
    wait_for(lambda: "up" in node.console("render"), 10, "the child")
    pid = node.child("render")["pid"]
    assert node.finish() < 5
    assert not pid_alive(pid) and "draining" in node.console("render")
    row = node.child("render")
    assert row["state"] == "stopped" and row["last_exit"]["code"] == 0 and row["restarts"] == 0


def test_a_child_ignoring_sigterm_is_killed_with_its_whole_group_after_the_grace(run):
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print('worker', worker.pid, flush=True)\n"
            "time.sleep(60)\n")
    node = run([ChildSpec("render", program(code))], grace=0.5)
    wait_for(lambda: "worker" in node.console("render"), 10, "the child and its worker")
    worker = int(node.console("render").split("worker ")[1].split()[0])
    pid = node.child("render")["pid"]
    assert 0.5 <= node.finish() < 5
    assert not pid_alive(pid) and not pid_alive(worker)
    assert node.child("render")["last_exit"]["code"] == -signal.SIGKILL


def test_what_a_killed_child_left_behind_is_killed_before_it_restarts(run):
    code = ("import subprocess, sys, time\n"
            "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print('worker', worker.pid, flush=True)\n"
            "time.sleep(60)\n")
    node = run([ChildSpec("render", program(code))], policy=RestartPolicy(initial=0.1))
    wait_for(lambda: "worker" in node.console("render"), 10, "the child and its worker")
    worker = int(node.console("render").split("worker ")[1].split()[0])
    os.kill(node.child("render")["pid"], signal.SIGKILL)
    wait_for(lambda: node.child("render").get("restarts") == 1, 10, "the restart")
    wait_for(lambda: not pid_alive(worker), 5, "the orphaned worker to be gone")


def test_a_missing_program_is_retried_not_fatal(run, tmp_path):
    node = run([ChildSpec("render", [str(tmp_path / "no-such-program")])],
               policy=RestartPolicy(initial=0.05, maximum=0.1))
    wait_for(lambda: node.child("render").get("restarts", 0) >= 2, 5, "retries")
    assert node.child("render")["last_exit"]["code"] == 127 and "cannot start" in node.console("render")


def test_console_logs_roll_by_size(run):
    code = "import sys\nfor i in range(6000):\n    print(f'{i:06d} ' + 'x' * 93)\nsys.stdout.flush()\n" \
           "import time; time.sleep(60)"
    node = run([ChildSpec("boxlink", program(code))], logs=LogPolicy(max_bytes=100_000, backups=2))
    folder = node.layout.log_dir
    wait_for(lambda: "005999" in node.console("boxlink"), 10, "all output")
    files = sorted(p.name for p in folder.glob("boxlink.console.log*"))
    assert files == ["boxlink.console.log", "boxlink.console.log.1", "boxlink.console.log.2"]
    assert all((folder / f).stat().st_size <= 100_000 for f in files)
    rolled = (folder / "boxlink.console.log.1").read_text().splitlines()
    live = (folder / "boxlink.console.log").read_text().splitlines()
    assert int(rolled[-1].split()[0]) + 1 == int(live[0].split()[0])  # rolled on a line boundary, in order


def test_status_call_shows_each_child(run, tmp_path):
    node = run([ChildSpec("render", program("import time; time.sleep(60)")),
                ChildSpec("boxlink", program("raise SystemExit(2)"))], policy=RestartPolicy(initial=5))
    wait_for(lambda: node.child("boxlink").get("state") == "backoff" and node.child("render").get("pid"), 10,
             "one running, one waiting")
    node.board.set(state="running", instance_id="i-0abc", address="127.0.0.2", port=8080, release="0.1.0-x")
    table = subprocess.run([str(BIN / "node-bootstrap"), "status", "--root", str(tmp_path / "node")],
                           capture_output=True, text=True)
    doc = subprocess.run([str(BIN / "node-bootstrap"), "status", "--root", str(tmp_path / "node"), "--json"],
                         capture_output=True, text=True)
    lines = table.stdout.splitlines()
    assert lines[0].startswith("node i-0abc 127.0.0.2:8080  release 0.1.0-x  state running"), table.stdout
    render = next(line for line in lines if line.startswith("render")).split()
    boxlink = next(line for line in lines if line.startswith("boxlink")).split()
    assert render[1:4] == [str(node.child("render")["pid"]), "running", "0"]
    assert boxlink[1:4] == ["-", "backoff", "0"] and "code 2" in " ".join(boxlink)
    assert {c["name"]: c["state"] for c in json.loads(doc.stdout)["children"]} == {"render": "running",
                                                                                  "boxlink": "backoff"}


def test_status_of_a_root_without_a_node_is_a_clear_error(tmp_path):
    done = subprocess.run([str(BIN / "node-bootstrap"), "status", "--root", str(tmp_path)], capture_output=True,
                          text=True)
    assert done.returncode == 1 and "no node status under" in done.stderr and "Traceback" not in done.stderr
