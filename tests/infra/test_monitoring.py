"""The fleet's monitoring configuration (infra/monitoring/): promtool accepts the rules and the config, the
rules' own unit tests pass, and every metric the alerts and the Grafana dashboard name is one we export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from proxy.app import ProxyApp
from proxy.settings import ProxySettings
from tiler import metrics as node_metrics

MONITORING = Path(__file__).resolve().parents[2] / "infra" / "monitoring"
PROMTOOL = shutil.which("promtool")
_NAME = re.compile(r"\b((?:gigatile|process)_[a-z_]+)\b")
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def promtool(*args: str) -> subprocess.CompletedProcess:
    assert PROMTOOL, "promtool is missing: `make promtool` (Debian's prometheus package) installs it"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=MONITORING)


def test_promtool_accepts_the_alert_rules_and_their_tests():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_accepts_the_prometheus_config():
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def exported(tmp_path: Path) -> set[str]:
    """Every metric family name tile-proxy and tiler serve expose."""
    app = ProxyApp(ProxySettings(bucket="b", cache_dir=tmp_path), s3=object())
    text = app.metrics.exposition()[0].decode() + node_metrics.exposition()[0].decode()
    return set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


def named(text: str) -> set[str]:
    return set(_NAME.findall(text))


def known(name: str, families: set[str]) -> bool:
    return name in families or any(name.endswith(s) and name[: -len(s)] in families for s in SUFFIXES)


def test_every_metric_the_alerts_and_the_dashboard_use_is_exported(tmp_path):
    families = exported(tmp_path)
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    alert_names = named(" ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"]))
    dashboard = json.loads((MONITORING / "grafana-fleet.json").read_text())
    panel_names = named(" ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"]))
    assert {"gigatile_proxy_backend_heartbeat_age_seconds", "gigatile_render_queue",
            "gigatile_disk_free_bytes"} <= alert_names
    unknown = sorted(n for n in alert_names | panel_names if not known(n, families))
    assert unknown == []
    assert len(dashboard["panels"]) >= 10 and dashboard["uid"] == "gigatile-fleet"
