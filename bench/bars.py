"""Bars: one measured figure (or its ratio to an anchor measured in the same run) against a limit; and the
list of every bar the benches must show, ``bench/BARS.md``, which the suite's report is checked against.

A bar is a plain dict, the shape every bench's ``doc["bars"]`` holds::

    {name, figure, unit, anchor, anchor_figure, ratio, bar, pass,      # what a bench prints
     key, limit, at_least, judged_on, kind, group?, note?}            # what the suite's report needs

``key`` names the row of BARS.md the bar belongs to; bars sharing a ``key`` and a ``group`` (the levels of one
wall) are one bar in the report, decided by the worst of them. ``kind`` is ``bar`` (an issue's bar), ``aim``
(an issue's stated aim), ``check`` (the bench's own sanity check) or ``info`` (a figure shown for reference,
``pass`` is None).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.tables import format_table, number

BARS_FILE = Path(__file__).resolve().parent / "BARS.md"
KINDS = ("bar", "aim", "check", "info")


def bar(name: str, figure: float, unit: str, limit: float | None, *, at_least: bool = False,
        anchor: str | None = None, anchor_figure: float | None = None, key: str | None = None,
        judged_on: str | None = None, kind: str = "bar", group: str | None = None, note: str | None = None) -> dict:
    """One bar: ``figure`` (or, with an anchor, figure / anchor_figure) against ``limit``.

    ``judged_on`` is ``"ratio"`` (the default when there is an anchor) or ``"figure"`` (the anchor is shown
    beside the figure but the limit applies to the figure itself). ``limit`` None (or ``kind="info"``) makes a
    figure shown for reference: ``pass`` is None.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    ratio = figure / anchor_figure if anchor_figure else None
    judged_on = judged_on or ("ratio" if ratio is not None else "figure")
    compared = ratio if judged_on == "ratio" else figure
    if limit is None or kind == "info":
        kind, rule, passed = "info", "— (for reference)", None
    else:
        amount = f"{limit:g}× {anchor}" if judged_on == "ratio" else f"{limit:g} {unit}"
        rule = ("≥ " if at_least else "≤ ") + amount + (" (aim)" if kind == "aim" else "")
        passed = None if compared is None else bool(compared >= limit if at_least else compared <= limit)
    doc = {"name": name, "figure": figure, "unit": unit, "anchor": anchor, "anchor_figure": anchor_figure,
           "ratio": ratio, "bar": rule, "pass": passed, "key": key, "limit": limit, "at_least": at_least,
           "judged_on": judged_on, "kind": kind}
    if group is not None:
        doc["group"] = group
    if note is not None:
        doc["note"] = note
    return doc


def format_bars(bars: Sequence[dict]) -> str:
    """The bars as a plain-text table (as each bench prints them)."""
    rows = [(b["name"], f"{number(b['figure'])} {b['unit']}",
             "" if b["anchor_figure"] is None else f"{b['anchor']} {number(b['anchor_figure'])} {b['unit']}",
             "" if b["ratio"] is None else f"{b['ratio']:.2f}×", b["bar"], verdict(b))
            for b in bars]
    return format_table(("bar", "figure", "anchor", "ratio", "rule", "result"), rows)


def verdict(b: dict) -> str:
    if b.get("error"):
        return "ERROR"
    if b.get("pass") is None:
        return "info"
    return "PASS" if b["pass"] else "FAIL"


# --- BARS.md --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BarSpec:
    """One row of BARS.md: the key the benches use, the issue, the bar as the issue states it, how measured."""

    key: str
    issue: str
    text: str
    how: str

    @property
    def bench(self) -> str:
        return self.key.split(".", 1)[0]


_ROW = re.compile(r"^\|\s*`(?P<key>[a-z0-9]+\.[a-z0-9.-]+)`\s*"
                  r"\|(?P<issue>[^|]*)\|(?P<text>[^|]*)\|(?P<how>[^|]*)\|\s*$")


def parse_bars(text: str) -> list[BarSpec]:
    """The bar rows of BARS.md's tables: ``| `bench.name` | issue | bar as written | how it is measured |``.
    ValueError on a key that appears twice."""
    specs: list[BarSpec] = []
    for line in text.splitlines():
        if m := _ROW.match(line.strip()):
            specs.append(BarSpec(m["key"], m["issue"].strip(), m["text"].strip(), m["how"].strip()))
    keys = [s.key for s in specs]
    if duplicated := sorted({k for k in keys if keys.count(k) > 1}):
        raise ValueError(f"BARS.md lists {', '.join(duplicated)} more than once")
    return specs


def read_bars(path: Path = BARS_FILE) -> list[BarSpec]:
    return parse_bars(path.read_text())
