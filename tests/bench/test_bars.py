"""bench/bars.py: a bar's verdict, and BARS.md as the list the suite's report is checked against."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.bars import bar, format_bars, parse_bars, read_bars, verdict

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_figure_bar_at_most() -> None:
    b = bar("p99", 30.0, "ms", 25, key="render.cold-p99")
    assert (b["pass"], b["ratio"], b["bar"], b["kind"]) == (False, None, "≤ 25 ms", "bar")
    assert verdict(b) == "FAIL"


def test_ratio_bar_at_least() -> None:
    b = bar("export", 3000.0, "tiles/s", 1.0, at_least=True, anchor="dzsave", anchor_figure=1500.0)
    assert b["ratio"] == 2.0 and b["pass"] is True and b["bar"] == "≥ 1× dzsave"


def test_anchor_shown_but_judged_on_the_figure() -> None:
    b = bar("miss overhead", 0.4, "ms", 1.0, anchor="nginx's", anchor_figure=0.2, judged_on="figure")
    assert b["ratio"] == 2.0 and b["pass"] is True and b["bar"] == "≤ 1 ms"


def test_info_and_aim() -> None:
    info = bar("throughput", 4000.0, "requests/s", None)
    assert info["pass"] is None and info["kind"] == "info" and verdict(info) == "info"
    aim = bar("vs iipsrv", 900.0, "requests/s", 1.0, at_least=True, anchor="iipsrv", anchor_figure=1000.0, kind="aim")
    assert aim["pass"] is False and aim["bar"].endswith("(aim)")
    with pytest.raises(ValueError):
        bar("x", 1.0, "s", 1.0, kind="maybe")


def test_format_bars_lists_every_bar() -> None:
    text = format_bars([bar("a", 1.0, "s", 2), bar("b", 3.0, "s", 2)])
    assert "PASS" in text and "FAIL" in text and len(text.splitlines()) == 3


def test_parse_bars_reads_rows_and_refuses_duplicates() -> None:
    text = "| key | issue | bar | how |\n|---|---|---|---|\n| `render.cold-p99` | 3 | p99 ≤ 25 ms | samples |\n"
    (spec,) = parse_bars(text)
    assert (spec.key, spec.issue, spec.text, spec.how, spec.bench) == ("render.cold-p99", "3", "p99 ≤ 25 ms",
                                                                      "samples", "render")
    with pytest.raises(ValueError, match="more than once"):
        parse_bars(text + text.splitlines()[2] + "\n")


def test_bars_md_and_the_benches_name_the_same_keys() -> None:
    """Every key a bench gives its bars is listed in BARS.md, and every listed key is given by its bench."""
    listed = {spec.key: spec for spec in read_bars()}
    used = {}
    for source in BENCH.glob("*.py"):
        for key in re.findall(r'key="([a-z0-9]+\.[a-z0-9.-]+)"', source.read_text()):
            used[key] = source.stem
    assert set(used) == set(listed)
    assert all(used[key] in (spec.bench, "suite") for key, spec in listed.items())
    assert all((BENCH / f"{spec.bench}.py").exists() for spec in listed.values())
