"""The suite's report: one row per bar of ``bench/BARS.md`` from the suite's results document, and the
Markdown page (``bench/results/<timestamp>.md``) around that table. Pure functions of the document."""

from __future__ import annotations

from collections.abc import Sequence

from bench.bars import BarSpec, verdict
from bench.tables import number

COLUMNS = ("issue", "bar", "our figure", "anchor, same run", "ratio", "the bar", "result", "note")


def _compared(b: dict) -> float | None:
    return b["ratio"] if b.get("judged_on") == "ratio" else b["figure"]


def worst(bars: Sequence[dict]) -> dict:
    """The bar of a group that decides it: a failing one first, then the one nearest (or furthest past) its
    limit (the highest figure for a ≤ bar, the lowest for a ≥ bar)."""
    def badness(b: dict) -> tuple[int, float]:
        value = _compared(b)
        value = 0.0 if value is None else value
        return (b.get("pass") is False, -value if b.get("at_least") else value)

    return max(bars, key=badness)


def _error_row(spec: BarSpec, reason: str) -> dict:
    return {"key": spec.key, "issue": spec.issue, "name": f"`{spec.key}`", "figure": None, "unit": "", "anchor": None,
            "anchor_figure": None, "ratio": None, "bar": spec.text, "pass": False, "kind": "error", "error": reason}


def _row(spec: BarSpec, bars: list[dict]) -> dict:
    chosen = worst(bars)
    row = {**chosen, "issue": spec.issue}
    if len(bars) > 1 and all(b.get("pass") is None for b in bars):
        row["name"] = f"{chosen['name']} ({'lowest' if chosen.get('at_least') else 'highest'} of {len(bars)})"
    elif len(bars) > 1:
        passed = sum(b.get("pass") is True for b in bars)
        row["name"] = f"{chosen['name']} (worst of {len(bars)}: {passed}/{len(bars)} pass)"
        row["pass"] = passed == len(bars)
    return row


def bar_rows(specs: Sequence[BarSpec], bars: Sequence[dict], errors: dict[str, str]) -> list[dict]:
    """One row per measured bar, in BARS.md's order: bars sharing a key and a group are one row (the worst);
    a bar no bench measured is an ERROR row, with the reason of its bench's failure (``errors``: bench name ->
    reason) if it failed; bars whose key BARS.md does not list come last, marked so."""
    rows: list[dict] = []
    for spec in specs:
        mine = [b for b in bars if b.get("key") == spec.key]
        if not mine:  # what a bench measured before it failed still shows; the rest carries its reason
            rows.append(_error_row(spec, errors.get(spec.bench, "not measured in this run")))
            continue
        groups: dict[object, list[dict]] = {}
        for b in mine:
            groups.setdefault(b.get("group") or id(b), []).append(b)
        rows += [_row(spec, group) for group in groups.values()]
    listed = {s.key for s in specs}
    for b in bars:
        if b.get("key") not in listed:
            note = "not in bench/BARS.md" + (f"; {b['note']}" if b.get("note") else "")
            rows.append({**b, "issue": "?", "note": note})
    return rows


def _figure(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{number(value)} {unit}".strip()


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_row(row: dict) -> list[str]:
    anchor = "—" if row.get("anchor_figure") is None else \
        f"{row['anchor']}: {_figure(row['anchor_figure'], row['unit'])}"
    ratio = "—" if row.get("ratio") is None else f"{row['ratio']:.2f}×"
    result = verdict(row)
    note = row.get("error") or row.get("note") or ""
    return [row.get("issue", ""), row["name"], _figure(row.get("figure"), row.get("unit", "")), anchor, ratio,
            row["bar"], f"**{result}**" if result in ("FAIL", "ERROR") else result, note]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bars_table(rows: Sequence[dict]) -> str:
    return markdown_table(COLUMNS, [format_row(r) for r in rows])


def tally(rows: Sequence[dict]) -> dict[str, int]:
    counts = {"PASS": 0, "FAIL": 0, "ERROR": 0, "info": 0}
    for row in rows:
        counts[verdict(row)] += 1
    return counts


def check_against_bars(specs: Sequence[BarSpec], rows: Sequence[dict]) -> dict[str, list[str]]:
    """Keys of BARS.md with no measured row (ERROR rows), and keys measured that BARS.md does not list."""
    listed = {s.key for s in specs}
    return {"not_measured": [r["key"] for r in rows if r.get("kind") == "error"],
            "not_in_bars_md": sorted({str(r.get("key")) for r in rows if r.get("key") not in listed})}


# --- the page -------------------------------------------------------------------------------------------------

def _machine_line(m: dict) -> str:
    v, t = m.get("versions", {}), m.get("tools", {})
    tools = ", ".join(f"{name}: {value}" for name, value in t.items() if value) or "—"
    return (f"{m['cpu']}, {m['cores']} cores, {m['memory_mb']:,} MB; {m.get('os', '')}, kernel {m['kernel']}; "
            f"Python {m['python']}, pyvips {v.get('pyvips')}, libvips {v.get('libvips (pyvips)')} (pyvips-binary); "
            f"{tools}")


def steps_table(steps: Sequence[dict]) -> str:
    rows = [(s["name"], s["status"] + (f": {s['error']}" if s.get("error") else ""), f"{s['seconds']:.0f}",
             " ".join(f"{x:.2f}" for x in s.get("load_average_before", [])),
             " ".join(f"{x:.2f}" for x in s.get("load_average_after", [])), s.get("log", ""))
            for s in steps]
    return markdown_table(("step", "status", "seconds", "load average before", "after", "log"), rows)


def memory_table(rows: Sequence[dict]) -> str:
    return markdown_table(("bench", "process", "when", "RSS MB", "PSS MB", "processes"), [
        (r["bench"], r["process"], r["when"], f"{r['rss_mb']:,.0f}",
         "—" if r.get("pss_mb") is None else f"{r['pss_mb']:,.0f}", r.get("processes", "")) for r in rows])


def latency_table(render: dict) -> str:
    rows = []
    for wall, w in render.get("walls", {}).items():
        if "levels" not in w:
            continue
        floor = w["floor"]["ms"]["p50"]
        for z, lv in w["levels"].items():
            ms, cpu = lv["ms"], lv["cpu_ms"]
            rows.append((wall, z, lv["tiles"], ms["n"], f"{ms['p50']:.3f}", f"{ms['p99']:.3f}",
                         f"{floor:.3f}", f"{ms['p50'] / floor:.2f}×", f"{cpu['p50']:.3f}", f"{cpu['p99']:.3f}",
                         "PASS" if ms["p50"] <= 5 * floor and ms["p99"] <= 25 else "**FAIL**"))
    return markdown_table(("wall", "level", "tiles", "samples", "p50 ms", "p99 ms", "floor ms", "p50/floor",
                           "cpu p50 ms", "cpu p99 ms", "p50 ≤ 5× floor, p99 ≤ 25 ms"), rows)


def cache_table(render: dict) -> str:
    """Cold-cache latency by level (every data file evicted before each tile) beside the warm p50."""
    rows = []
    for wall, w in render.get("walls", {}).items():
        if "cache" not in w or "levels" not in w:
            continue
        resident = w["cache"]["resident_after_evict"].get("mean", 0.0)
        for z, lv in w["cache"]["levels"].items():
            warm, cold = w["levels"][z]["render_ms"]["p50"], lv["render"]  # render + encode, as the bar's anchor
            rows.append((wall, w["cache"]["layout"], f"{resident:.0%}", z, cold["n"], f"{warm:.3f}",
                         f"{cold['p50']:.3f}", f"{cold['p99']:.3f}", f"{cold['p50'] / warm:.2f}×",
                         f"{lv['served warm']['p50']:.3f}", f"{lv['served']['p50']:.3f}", f"{lv['served']['p99']:.3f}",
                         "PASS" if cold["p50"] <= 3 * warm and cold["p99"] <= 25 else "**FAIL**"))
    return markdown_table(("wall", "layout", "resident after eviction", "level", "samples", "warm p50 ms",
                           "cold-cache p50 ms", "p99 ms", "p50/warm", "served warm p50", "served cold p50",
                           "served cold p99", "p50 ≤ 3× warm, p99 ≤ 25 ms"), rows)


def markdown(doc: dict, plots: dict[str, str]) -> str:
    """The whole page: header (machine, versions, commit), the bar table, steps, memory, latency by level."""
    s, rows = doc["suite"], doc["rows"]
    counts, check = tally(rows), doc["bars_check"]
    lines = [f"# gigatile benchmark report, {s['started']}{' (quick)' if s['quick'] else ''}", "",
             f"- **Machine**: {_machine_line(doc['machine'])}",
             f"- **Code**: commit {s['git']['commit']}"
             + (f", with uncommitted changes in {', '.join(s['git']['dirty'])}" if s["git"]["dirty"] else ""),
             f"- **Run**: `{s['command']}`; {s['seconds']:.0f} s from start to this report; load average at start "
             f"{doc['machine']['load_average']}, at the end {s['load_average_end']}",
             f"- **Result**: {counts['PASS']} pass, {counts['FAIL']} fail, {counts['ERROR']} error, {counts['info']} "
             "for reference. Every figure is beside its anchor measured in the same run on this machine; only "
             "ratios travel. The JSON beside this page has every figure with its spread.",
             "- **Checked against bench/BARS.md**: "
             + ("every bar listed there has a row" if not check["not_measured"]
                else f"not measured: {', '.join(check['not_measured'])}")
             + ("" if not check["not_in_bars_md"]
                else f"; measured but not listed: {', '.join(check['not_in_bars_md'])}"),
             "", "## Bars", "", bars_table(rows), "",
             "A bar measured per level (`group`) is one row: its worst level decides. `(aim)` is an issue's stated "
             "aim, not its bar; `info` rows are figures shown for reference.", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({path})" for name, path in plots.items()] + [""]
    lines += ["## Steps", "", steps_table(doc["steps"]), ""]
    if doc.get("memory"):
        lines += ["## Memory of each process", "",
                  "Sums over each process tree (a server's parent and workers). RSS counts pages shared between "
                  "processes (the memory-mapped packs) once per process; PSS divides them among the processes.", "",
                  memory_table(doc["memory"]), ""]
    if "render" in doc.get("benches", {}):
        lines += ["## Cold-tile latency by level", "", latency_table(doc["benches"]["render"]), ""]
        if any("cache" in w for w in doc["benches"]["render"].get("walls", {}).values()):
            lines += ["## Cold-cache latency by level", "",
                      "Every data file of the dataset evicted from the page cache (`POSIX_FADV_DONTNEED`) before each "
                      "timed call; render + JPEG q85 beside the warm p50 of the cold-tile step; `served` is what a "
                      "request answers (a stored JPEG as stored). A page the process maps (the chains layout's packs) "
                      "is not evicted: the share still resident is shown.", "",
                      cache_table(doc["benches"]["render"]), ""]
    return "\n".join(lines)


def memory_rows(benches: dict[str, dict]) -> list[dict]:
    """Every process whose memory a bench measured: render's server at each checkpoint, and the ``memory``
    lists of the other benches."""
    rows = []
    for name, doc in benches.items():
        found = doc.get("memory")
        if name == "render" and isinstance(found, dict):
            server = found.get("server", "tiler serve")
            for point in found.get("points", []):
                when = "ready" if point["requests"] == 0 else f"after {point['requests']:,} requests"
                rows.append({"bench": name, "process": server, "when": when, "rss_mb": point["rss_mb"],
                             "pss_mb": point["pss_mb"], "processes": len(point.get("processes", []))})
        elif isinstance(found, list):
            rows += [{"bench": name, **row} for row in found]
    return rows
