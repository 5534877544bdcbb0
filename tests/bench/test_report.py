"""bench/report.py: the table of bars from a results document, without running any bench."""

from __future__ import annotations

from bench.bars import BarSpec, bar
from bench.report import bar_rows, bars_table, check_against_bars, markdown, memory_rows, tally, worst

SPECS = [BarSpec("render.cold-p50", "3", "p50 ≤ 5× floor at every level", "samples"),
         BarSpec("render.export", "3", "≥ 1.0× dzsave", "rounds"),
         BarSpec("proxy.hits", "6", "≥ 0.3× nginx", "wrk"),
         BarSpec("boxlink.sync", "4", "≥ 1.0× aws s3 sync", "rounds")]


def level_bars(group: str, p50s: list[float], floor: float = 0.2) -> list[dict]:
    return [bar(f"{group} z={z} cold p50", p50, "ms", 5, anchor="floor", anchor_figure=floor,
                key="render.cold-p50", group=group) for z, p50 in enumerate(p50s)]


def test_worst_prefers_a_failure_then_the_nearest_to_the_limit() -> None:
    bars = level_bars("46-Gpx", [0.3, 0.9, 0.5])
    assert worst(bars)["name"] == "46-Gpx z=1 cold p50"
    bars = level_bars("46-Gpx", [0.3, 1.2, 0.5])
    assert worst(bars)["pass"] is False and worst(bars)["name"] == "46-Gpx z=1 cold p50"
    at_least = [bar(f"r{n}", v, "x", 1.0, at_least=True) for n, v in enumerate([3.0, 1.5, 2.0])]
    assert worst(at_least)["name"] == "r1"


def test_rows_group_levels_per_wall_and_mark_errors_and_unknown_keys() -> None:
    bars = [*level_bars("46-Gpx", [0.3, 1.2]), *level_bars("1-Gpx", [0.3, 0.4]),
            bar("tiler render tiles/s", 2000.0, "tiles/s", 1.0, at_least=True, anchor="dzsave", anchor_figure=1500.0,
                key="render.export"),
            bar("stray", 1.0, "s", 2.0, key="render.stray")]
    errors = {"proxy": "exit 1: nginx is not installed", "render": "ran past its bound of 240 s (stopped)"}
    rows = bar_rows(SPECS, bars, errors)
    by_name = {r["name"]: r for r in rows}
    assert [r["key"] for r in rows] == ["render.cold-p50", "render.cold-p50", "render.export", "proxy.hits",
                                        "boxlink.sync", "render.stray"]
    assert by_name["46-Gpx z=1 cold p50 (worst of 2: 1/2 pass)"]["pass"] is False
    assert by_name["1-Gpx z=1 cold p50 (worst of 2: 2/2 pass)"]["pass"] is True
    assert by_name["`proxy.hits`"]["error"] == "exit 1: nginx is not installed"
    assert by_name["`boxlink.sync`"]["error"] == "not measured in this run"
    assert by_name["stray"]["note"] == "not in bench/BARS.md"
    assert tally(rows) == {"PASS": 3, "FAIL": 1, "ERROR": 2, "info": 0}
    assert check_against_bars(SPECS, rows) == {"not_measured": ["proxy.hits", "boxlink.sync"],
                                               "not_in_bars_md": ["render.stray"]}


def test_the_table_has_every_column_of_a_row() -> None:
    rows = bar_rows(SPECS[1:2], [bar("tiler render tiles/s", 2000.0, "tiles/s", 1.0, at_least=True,
                                     anchor="dzsave", anchor_figure=1500.0, key="render.export")], {})
    header, rule, line = bars_table(rows).splitlines()
    assert header.startswith("| issue | bar | our figure | anchor, same run | ratio | the bar | result |")
    assert line == ("| 3 | tiler render tiles/s | 2,000 tiles/s | dzsave: 1,500 tiles/s | 1.33× | ≥ 1× dzsave "
                    "| PASS |  |")


def test_memory_rows_from_render_points_and_bench_lists() -> None:
    benches = {"render": {"memory": {"server": "tiler serve", "points": [
                   {"requests": 0, "rss_mb": 400.0, "pss_mb": 280.0, "processes": [{}, {}]},
                   {"requests": 100_000, "rss_mb": 1500.0, "pss_mb": 900.0, "processes": [{}, {}]}]}},
               "proxy": {"memory": [{"process": "tile-proxy", "when": "after", "rss_mb": 90.0, "pss_mb": 80.0}]}}
    rows = memory_rows(benches)
    assert [(r["bench"], r["when"]) for r in rows] == [("render", "ready"), ("render", "after 100,000 requests"),
                                                       ("proxy", "after")]


def test_markdown_page_holds_the_table_and_the_machine() -> None:
    rows = bar_rows(SPECS[1:2], [], {})
    doc = {"suite": {"started": "2026-01-01 00:00:00 UTC", "quick": True, "command": "make bench QUICK=1",
                     "git": {"commit": "abc1234", "dirty": ["tiler/compose.py"]}, "seconds": 12.0,
                     "load_average_end": [1.0, 1.0, 1.0]},
           "machine": {"cpu": "AMD EPYC", "cores": 2, "memory_mb": 24000, "os": "Debian", "kernel": "6.1",
                       "python": "3.11.7", "versions": {"pyvips": "3.2.0"}, "tools": {"wrk": "wrk 4.1.0"},
                       "load_average": [0.5, 0.5, 0.5]},
           "rows": rows, "bars_check": check_against_bars(SPECS[1:2], rows), "steps": [], "benches": {}}
    page = markdown(doc, {"throughput vs anchors": "x-throughput.png"})
    assert "(quick)" in page and "AMD EPYC, 2 cores" in page and "uncommitted changes in tiler/compose.py" in page
    assert "| 3 | `render.export` |" in page and "**ERROR**" in page and "not measured: render.export" in page
    assert "![throughput vs anchors](x-throughput.png)" in page


def test_info_bars_of_a_group_show_the_lowest_without_a_verdict() -> None:
    spec = BarSpec("render.http-throughput", "3", "info: HTTP throughput", "wrk")
    bars = [bar(f"HTTP {mix}", value, "requests/s", None, at_least=True, key=spec.key, group="46-Gpx")
            for mix, value in (("distinct", 3000.0), ("uniform", 5000.0))]
    (row,) = bar_rows([spec], bars, {})
    assert row["name"] == "HTTP distinct (lowest of 2)" and row["pass"] is None and tally([row])["info"] == 1


def test_cold_cache_table_per_level_beside_warm() -> None:
    from bench.report import cache_table

    ms = lambda p50, p99: {"n": 60, "p50": p50, "p99": p99}  # noqa: E731
    # the anchor is the warm render + encode (render_ms), as the bar's, not the stored bytes served (ms)
    wall = {"levels": {"0": {"ms": ms(0.02, 0.05), "render_ms": ms(1.0, 2.0)},
                       "1": {"ms": ms(0.02, 0.05), "render_ms": ms(2.0, 3.0)}},
            "cache": {"layout": "pyramid", "resident_after_evict": {"mean": 0.0},
                      "levels": {z: {"render": ms(4.0, 9.0), "served": ms(0.3, 0.5), "served warm": ms(0.1, 0.2)}
                                 for z in ("0", "1")}}}
    table = cache_table({"walls": {"2-Gpx distinct": wall, "1-Gpx": {"levels": {}}}})
    assert "| 2-Gpx distinct | pyramid | 0% | 0 | 60 | 1.000 | 4.000 | 9.000 | 4.00× |" in table
    assert "| 2-Gpx distinct | pyramid | 0% | 1 | 60 | 2.000 | 4.000 | 9.000 | 2.00× |" in table
    assert table.count("**FAIL**") == 1 and "1-Gpx" not in table
