"""The tile benchmark suite (issue 8): prepares the bench datasets, runs every bench under ``bench/`` as its own
process, each bounded in time, and writes one report: ``bench/results/<timestamp>.json`` (machine, versions,
every step's load average, every bench's whole results document), ``<timestamp>.md`` (the table of every bar
of ``bench/BARS.md``: our figure, the anchor's figure from the same run, the ratio, the bar, PASS/FAIL/ERROR)
and ``<timestamp>-*.png`` plots. A bench that fails or runs out of time is an ERROR row with its reason; the
suite goes on.

    make bench [QUICK=1]                     # installs what it needs, then runs this
    .venv/bin/python -m bench.suite [--quick] [--only render,iipsrv] [--work bench/work]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import plots, report
from bench.bars import bar, read_bars
from bench.machine import load_average, machine
from bench.processes import descendants, stop_on_sigterm
from bench.progress import console
from bench.results import RESULTS_DIR, WORK_DIR, timestamp

REPO = Path(__file__).resolve().parents[1]
QUICK_BUDGET_SECONDS = 300.0


@dataclass(frozen=True)
class Step:
    name: str
    quick_seconds: float  # the time bound of the step (not what it is expected to take)
    full_seconds: float
    args: tuple[str, ...] = ()

    def command(self, quick: bool, work: Path, results: Path | None) -> list[str]:
        args = [sys.executable, "-m", f"bench.{self.name}", *self.args, "--work", str(work)]
        args += ["--quick"] if quick else []
        return args + (["--results-dir", str(results)] if results is not None else [])


STEPS = (
    Step("datasets", 1800, 3600),  # from nothing it takes minutes; cached, seconds
    Step("render", 240, 1500),
    Step("iipsrv", 120, 400),
    Step("proxy", 120, 400),
    Step("iiif", 150, 420),
    Step("publish", 300, 2400),
    Step("boxlink", 240, 1500),
    Step("coldstart", 240, 1200),
    Step("search", 180, 1800),
)
BENCHES = tuple(step.name for step in STEPS if step.name != "datasets")


def _stop(popen: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the step's process group (each bench stops its own children then), wait, then SIGKILL what is
    left of the tree it had, by PID (only processes whose command line is still the one seen before)."""
    tree = []
    for pid in descendants(popen.pid):
        try:
            tree.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes()))
        except OSError:
            continue
    try:
        os.killpg(popen.pid, signal.SIGTERM)
        popen.wait(grace)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(5)
    for pid, cmdline in tree:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


def _last_error(log: Path) -> str:
    """The line of a step's log that says why it failed: an ``error:`` line, else the last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if "error:" in line.lower() or line.startswith(("RuntimeError", "Traceback")) or "Error:" in line:
            return line[-300:]
    return lines[-1][-300:] if lines else "no output"


def run_step(step: Step, quick: bool, work: Path, run_dir: Path) -> tuple[dict, dict | None]:
    """Run one step as its own process within its time bound; return (its record, its results document)."""
    results = None if step.name == "datasets" else run_dir / step.name
    log = run_dir / f"{step.name}.log"
    bound = step.quick_seconds if quick else step.full_seconds
    record: dict = {"name": step.name, "command": " ".join(step.command(quick, work, results)),
                    "bound_seconds": bound, "log": str(log.relative_to(REPO) if log.is_relative_to(REPO) else log),
                    "load_average_before": load_average()}
    console.rule(f"{step.name} (bound {bound:.0f} s)")
    started = time.monotonic()
    with log.open("wb") as out:
        popen = subprocess.Popen(step.command(quick, work, results), stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                 start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            popen.wait(bound)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if popen.poll() is None:
                _stop(popen)
    record.update(seconds=time.monotonic() - started, exit_code=popen.returncode, load_average_after=load_average())
    doc = None
    if results is not None:
        found = sorted(results.glob("*.json")) if results.exists() else []
        doc = json.loads(found[-1].read_text()) if found else None
        record["results_file"] = str(found[-1]) if found else None
    if timed_out:
        record.update(status="error", error=f"ran past its bound of {bound:.0f} s (stopped); see {record['log']}")
    elif step.name == "datasets" and popen.returncode == 0:
        line = next((x for x in log.read_text().splitlines() if x.startswith("JSON ")), None)
        record.update(status="ok", datasets=json.loads(line[5:]) if line else None)
    elif doc is None or popen.returncode not in (0, 3) or doc.get("complete") is False:
        record.update(status="error", error=f"exit {popen.returncode}: {_last_error(log)}")
    else:
        record["status"] = "ok"
    console.log(f"{step.name}: {record['status']} in {record['seconds']:.0f} s"
                + (f" ({record['error']})" if record.get("error") else ""))
    return record, doc


def git_state() -> dict:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20)
        return done.stdout if done.returncode == 0 else ""

    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line[3:]]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or "unknown", "dirty": dirty}


def assemble(doc: dict, specs, quick: bool, started: float) -> None:
    """The report's rows, the check against BARS.md, the memory table and the suite's own time bar."""
    errors = {s["name"]: s["error"] for s in doc["steps"] if s["status"] == "error" and s["name"] in BENCHES}
    errors.update({name: "not run in this run (--only)" for name in BENCHES
                   if name not in {s["name"] for s in doc["steps"]}})
    seconds = time.monotonic() - started
    own = bar("the suite, dataset preparation included", seconds, "s", QUICK_BUDGET_SECONDS if quick else None,
              key="suite.quick-time", note=None if quick else "full run: the 5-minute bound is for QUICK=1")
    bars = [{**b, "bench": name} for name, bench in doc["benches"].items() for b in bench.get("bars", [])]
    doc["bars"] = bars + [{**own, "bench": "suite"}]
    doc["rows"] = report.bar_rows(specs, doc["bars"], errors)
    doc["bars_check"] = report.check_against_bars(specs, doc["rows"])
    doc["memory"] = report.memory_rows(doc["benches"])
    doc["suite"].update(seconds=seconds, load_average_end=load_average())


def run(quick: bool, only: tuple[str, ...], work: Path, results_dir: Path) -> tuple[Path, Path]:
    started, stamp = time.monotonic(), timestamp()
    specs = read_bars()
    run_dir = work / "suite" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    command = "make bench" + (" QUICK=1" if quick else "") if os.environ.get("MAKELEVEL") else \
        shlex.join(["python", "-m", "bench.suite", *sys.argv[1:]])
    doc: dict = {"suite": {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "stamp": stamp, "quick": quick,
                           "command": command, "git": git_state(), "run_dir": str(run_dir)},
                 "machine": machine(tools=True), "steps": [], "benches": {}}
    for step in STEPS:
        if only and step.name not in only and step.name != "datasets":
            continue
        record, bench_doc = run_step(step, quick, work, run_dir)
        doc["steps"].append(record)
        if bench_doc is not None:
            doc["benches"][step.name] = bench_doc
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_dir / stamp
    made = plots.make_plots(doc["benches"], stem)
    assemble(doc, specs, quick, started)
    doc["suite"]["plots"] = {name: str(path) for name, path in made.items()}
    md = stem.with_suffix(".md")
    md.write_text(report.markdown(doc, {name: path.name for name, path in made.items()}) + "\n")
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return json_path, md


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"the reduced run (under {QUICK_BUDGET_SECONDS:.0f} s)")
    parser.add_argument("--only", default="", help=f"comma-separated benches, of {','.join(BENCHES)}")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="cached datasets, logs, scratch")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    if unknown := set(only) - set(BENCHES):
        parser.error(f"unknown benches {sorted(unknown)}; choose from {','.join(BENCHES)}")
    stop_on_sigterm()
    try:
        json_path, md = run(args.quick, only, args.work.resolve(), args.results_dir.resolve())
    except KeyboardInterrupt:
        console.print("interrupted: the running step was stopped")
        return 130
    text = md.read_text()
    table = text[text.index("## Bars"):text.index("\n## ", text.index("## Bars") + 1)]
    print(table)
    print(f"report: {md}\nresults: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
