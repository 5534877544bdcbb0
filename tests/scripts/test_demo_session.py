"""scripts/demo_session.py and scripts/demo.py's start: one demo per work folder; a second one touches nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from demo_session import Record, Session, s3_variables, write_env

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo.py"


def run_demo(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEMO), *args], capture_output=True, text=True, timeout=timeout)


def test_a_second_demo_says_who_runs_where_and_how_to_stop_it_and_touches_nothing(tmp_path: Path):
    work = tmp_path / "demo-work"
    first = Session(work)
    assert first.acquire()
    record = Record(pid=os.getpid(), started=0.0, work=str(work), viewer="http://127.0.0.1:8000/",
                    bucket="gigatile-demo", state="running", s3_endpoint="http://127.0.0.1:12345")
    first.save(record)
    before = {p.name: p.read_bytes() for p in work.iterdir()}

    second = run_demo("--work", str(work), "--gigapixels", "0.01")
    assert second.returncode == 1
    said = " ".join(second.stdout.split())
    assert f"a demo is running from {work} (pid {os.getpid()}" in said
    assert "the viewer http://127.0.0.1:8000/" in said and "http://127.0.0.1:12345" in said
    assert "Ctrl-C in its terminal, or: make demo-stop" in said and f"kill {os.getpid()}" in said
    assert {p.name: p.read_bytes() for p in work.iterdir()} == before  # not a byte of the first one changed

    update = run_demo("update", "--work", str(work))  # running, so update may go on: it finds no wall
    assert update.returncode == 1 and "demo-update failed" in update.stdout
    first.release()
    assert not (work / "demo.json").exists()
    gone = run_demo("update", "--work", str(work))
    assert gone.returncode == 1 and "no demo is running" in gone.stdout
    stop = run_demo("stop", "--work", str(work))
    assert stop.returncode == 0 and "no demo is running" in stop.stdout


def test_a_killed_demo_leaves_its_record_for_the_next_one_to_clean_up(tmp_path: Path):
    work = tmp_path / "demo-work"
    killed = subprocess.run([sys.executable, "-c", f"""
import sys; sys.path.insert(0, {str(REPO / 'scripts')!r})
from demo_session import Record, Session
s = Session(__import__('pathlib').Path({str(work)!r})); assert s.acquire()
s.save(Record(pid=1, started=0.0, work='', viewer='', bucket='b'))
"""], timeout=30)  # exits without release(): the kernel drops the lock, the record stays
    assert killed.returncode == 0
    session = Session(work)
    assert session.acquire()
    left = session.left_behind()
    assert left is not None and left.bucket == "b"
    session.release()
    assert (work / "demo.json").exists()  # only the demo that wrote it removes it


def test_the_env_file_sets_what_the_clis_need(tmp_path: Path):
    path = tmp_path / "env"
    write_env(path, s3_variables("http://127.0.0.1:9", "key", "it's secret", "us-east-1", "gigatile-demo"))
    shown = subprocess.run(["bash", "-c", f"source {path} && env"], capture_output=True, text=True, timeout=10)
    env = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    assert env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9" and env["AWS_SECRET_ACCESS_KEY"] == "it's secret"
    assert env["GIGATILE_BUCKET"] == "gigatile-demo" and env["AWS_ACCESS_KEY_ID"] == "key"


def test_demo_stop_ends_the_demo_holding_the_folder_and_waits_for_it(tmp_path: Path):
    work = tmp_path / "demo-work"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time; sys.path.insert(0, {str(REPO / 'scripts')!r})
from demo_session import Session
s = Session(__import__('pathlib').Path({str(work)!r})); assert s.acquire()
print('holding', flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        stop = run_demo("stop", "--work", str(work))
        assert stop.returncode == 0 and f"stopped the demo (pid {holder.pid})" in stop.stdout
        assert holder.wait(5) != 0  # SIGTERM ended it
    finally:
        holder.kill()
