"""Issue 14's bars from results documents, without running a bench: walls of distinct covers beside the
default wall, cold-cache latency beside warm, boxlink beside s5cmd like with like, publish memory and footprint."""

from __future__ import annotations

from bench import boxlink, coldstart, iipsrv, publish, render


def by_key(bars: list[dict], key: str) -> list[dict]:
    return [b for b in bars if b["key"] == key]


def level(p50: float, p99: float) -> dict:
    return {"n": 60, "p50": p50, "p99": p99}


def test_render_cold_cache_is_judged_against_the_warm_p50_of_the_same_level() -> None:
    wall = {"floor": {"ms": {"p50": 0.3}},
            # ms: as a request answers the tile (a stored JPEG as stored); render_ms: rendered + encoded, the anchor
            "levels": {"0": {"ms": level(0.02, 0.05), "render_ms": level(0.5, 1.0)},
                       "1": {"ms": level(0.02, 0.05), "render_ms": level(1.0, 2.0)}},
            "cache": {"layout": "pyramid", "bytes": 3e8, "resident_after_evict": {"mean": 0.0},
                      "levels": {"0": {"render": level(1.4, 3.0), "served": level(0.2, 0.4),
                                       "served warm": level(0.05, 0.1)},
                                 "1": {"render": level(3.5, 30.0), "served": level(0.2, 0.4),
                                       "served warm": level(0.05, 0.1)}}}}
    bars = render.collect_bars({"walls": {"2-Gpx distinct": wall}})
    p50 = {b["name"]: b for b in by_key(bars, "render.cache-cold-p50")}
    assert p50["2-Gpx distinct z=0 cold-cache p50"]["pass"] and p50["2-Gpx distinct z=0 cold-cache p50"]["ratio"] == 2.8
    assert not p50["2-Gpx distinct z=1 cold-cache p50"]["pass"]  # 3.5x the warm 1.0 ms
    p99 = [b["pass"] for b in by_key(bars, "render.cache-cold-p99")]
    assert p99 == [True, False] and {b["group"] for b in bars} == {"2-Gpx distinct"}
    assert all(b["pass"] is None for b in by_key(bars, "render.cache-cold-served"))
    cold = by_key(bars, "render.cold-p50")  # the cold-tile bar: the tile as a request answers it, beside the floor
    assert [b["figure"] for b in cold] == [0.02, 0.02] and all(b["pass"] for b in cold)


def test_iipsrv_bar_of_1_5x_only_on_the_distinct_wall() -> None:
    def lv(ours: float, theirs: float) -> dict:
        result = {"requests_per_s": 0.0, "non200": 0, "socket_errors": 0, "timeouts": 0}
        best = {"tiler serve": {**result, "requests_per_s": ours}, "iipsrv": {**result, "requests_per_s": theirs}}
        return {"level": 16, "best": best, "rounds": {side: [r] for side, r in best.items()}}

    doc = {"walls": {"2-Gpx distinct": {"levels": {"deepest": lv(1400, 1000), "1:4": lv(1600, 1000)}, "sanity": {}},
                     "1-Gpx": {"levels": {"deepest": lv(900, 1000)}, "sanity": {}}}}
    bars = iipsrv.collect_bars(doc)
    assert [b["pass"] for b in by_key(bars, "iipsrv.throughput-distinct")] == [False, True]
    assert [b["pass"] for b in by_key(bars, "iipsrv.throughput")] == [True, True, False]


def test_boxlink_beside_s5cmd_counts_the_time_to_disk_of_both() -> None:
    figures = {"rounds": 2, "bytes": 3e8, "median_mb_per_second": {"boxlink": 200.0, "s5cmd": 400.0},
               "median_durable_mb_per_second": {"boxlink": 180.0, "s5cmd": 150.0}}
    b = boxlink.s5cmd_bar("2-Gpx distinct", figures)
    assert b["pass"] and b["ratio"] == 1.2 and b["group"] == "2-Gpx distinct" and "0.50×" in b["note"]


def test_coldstart_rows_per_distinct_wall_and_the_size_check() -> None:
    def launch(first: float, correct: bool = True) -> dict:
        return {"total_seconds": first, "replicated_seconds": first + 20, "first_tile_correct": correct,
                "lazy_at_first_tile": True}

    doc = {"runs": [{"total_seconds": 9.0}], "median_seconds": 9.0,
           "distinct": {"0.2-Gpx distinct": {"published_bytes": 3e7, "runs": [launch(3.0)]},
                        "2-Gpx distinct": {"published_bytes": 3e8, "runs": [launch(6.0, correct=False)]}}}
    bars = coldstart.collect_bars(doc)
    assert [b["pass"] for b in by_key(bars, "coldstart.first-tile-distinct")] == [True, False]
    assert [b["pass"] for b in by_key(bars, "coldstart.first-tile-correct")] == [True, False]
    assert by_key(bars, "coldstart.size-ratio")[0]["pass"] and by_key(bars, "coldstart.size-ratio")[0]["figure"] == 10
    assert [b["figure"] for b in by_key(bars, "coldstart.replicated")] == [23.0, 26.0]


def test_publish_memory_per_wall_and_the_footprint_beside_dzsave() -> None:
    def wall(peak: float, dzsave: bool) -> dict:
        doc = {"covers": 4417, "publish": {"peak_mb": peak, "seconds": 40.0, "covers_per_s": 110.0},
               "node_bytes": 2.9e8, "node_bytes_per_gpx": 1.45e8}
        return {**doc, "dzsave": {"covers_per_s": 100.0, "bytes": 3.2e8, "bytes_per_gpx": 1.6e8}} if dzsave else doc

    doc = {"distinct": {"2-Gpx distinct": wall(900.0, True), "20-Gpx distinct": wall(2100.0, False)}}
    bars = publish.distinct_bars(doc, "2-Gpx distinct")
    assert [b["pass"] for b in by_key(bars, "publish.peak-memory")] == [True, False]
    footprint = by_key(bars, "publish.footprint")
    assert len(footprint) == 1 and footprint[0]["pass"] and round(footprint[0]["ratio"], 3) == 0.906
    covers = by_key(bars, "publish.covers-per-s")
    assert covers[0]["ratio"] == 1.1 and covers[1]["anchor_figure"] is None and covers[1]["pass"] is None
