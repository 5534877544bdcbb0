"""One scenario at a time: the cluster healthy, the bounded load started, the fault injected once a quarter
of it is done, the recovery timed, the load finished; then its report, as JSON and Markdown.

A report holds the requests, the failures by status, the wrong pixels (answers whose pixels differ from the
reference), the recovery time (from the injection to the scenario's own "recovered" condition), the time
between the first and last failed request, and the scenario's own checks (e.g. corruptions detected)."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.chaos.cluster import Cluster
from tests.chaos.load import Load, Reference
from tests.processes import wait_for

Checks = dict[str, object]


@dataclass
class Report:
    scenario: str
    fault: str
    requests: int
    ok: int
    failed: int
    failed_percent: float
    failures_by_status: dict[str, int]
    wrong_pixels: int  # answers with at least one pixel unlike the reference's
    recovery_seconds: float | None  # None: not recovered within the scenario's timeout
    failure_window_seconds: float
    load_seconds: float
    checks: Checks = field(default_factory=dict)

    def markdown(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in self.failures_by_status.items()) or "-"
        recovery = "not recovered" if self.recovery_seconds is None else f"{self.recovery_seconds:.2f} s"
        lines = [f"# chaos: {self.scenario}", "", self.fault, "", "| measure | value |", "|---|---|",
                 f"| requests | {self.requests} |", f"| 200 | {self.ok} |",
                 f"| failed | {self.failed} ({self.failed_percent:.3f} %) |",
                 f"| failures by status | {statuses} |",
                 f"| wrong pixels (answers) | {self.wrong_pixels} |",
                 f"| recovery | {recovery} |",
                 f"| failures from first to last | {self.failure_window_seconds:.2f} s |",
                 f"| load lasted | {self.load_seconds:.1f} s |"]
        lines += [f"| {name} | {value} |" for name, value in self.checks.items()]
        return "\n".join(lines) + "\n"


def write_report(report: Report, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{report.scenario}.json").write_text(json.dumps(asdict(report), indent=1) + "\n")
    (results / f"{report.scenario}.md").write_text(report.markdown())
    rows = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    table = ["# chaos: every scenario run into this folder", "",
             "| scenario | requests | failed | wrong pixels | recovery (s) |", "|---|---|---|---|---|"]
    table += [f"| {r['scenario']} | {r['requests']} | {r['failed']} ({r['failed_percent']:.3f} %) | "
              f"{r['wrong_pixels']} | {r['recovery_seconds'] if r['recovery_seconds'] is not None else '-'} |"
              for r in rows]
    (results / "summary.md").write_text("\n".join(table) + "\n")


@dataclass
class Scenario:
    name: str
    fault: str  # one sentence: what is done
    inject: Callable[[], Checks]  # does the damage (and any repair it owns); returns its own findings
    recovered: Callable[[], bool]  # polled after ``inject`` returns
    requests: int = 600
    rate: float = 60.0
    recovery_timeout: float = 90.0


def run(scenario: Scenario, cluster: Cluster, reference: Reference, results: Path) -> Report:
    """``scenario`` under load on a healthy ``cluster``; its report is written to ``results``."""
    cluster.wait_healthy()
    load = Load(cluster.proxy.url, reference, scenario.requests, scenario.rate, seed=zlib.crc32(scenario.name.encode()))
    load.start()
    wait_for(lambda: load.done() >= scenario.requests // 4, 60, "a quarter of the load")
    injected = time.monotonic()
    checks = scenario.inject()
    recovery: float | None
    try:
        wait_for(scenario.recovered, scenario.recovery_timeout, f"{scenario.name}: recovery", interval=0.1)
        recovery = round(time.monotonic() - injected, 2)
    except AssertionError:
        recovery = None
    load.join(scenario.requests / scenario.rate + 120)
    failures = [a for a in load.answers if a.outcome != "200"]
    by_status = {k: v for k, v in sorted(load.outcomes().items()) if k != "200"}
    report = Report(
        scenario=scenario.name, fault=scenario.fault, requests=len(load.answers),
        ok=len(load.answers) - len(failures), failed=len(failures),
        failed_percent=round(100 * len(failures) / max(1, len(load.answers)), 3), failures_by_status=by_status,
        wrong_pixels=sum(a.wrong for a in load.answers), recovery_seconds=recovery,
        failure_window_seconds=round(max((a.finished for a in failures), default=0)
                                     - min((a.started for a in failures), default=0), 2),
        load_seconds=round(max(a.finished for a in load.answers) - load.began, 1), checks=checks)
    write_report(report, results)
    return report
