"""The bookstore bars of issue 15: search and hit-test latency over HTTP on walls of ~100,000 and ~2,000,000
items, beside a naive ``LIKE '%...%'`` scan of the same table (the anchor), the index's size and the node's
memory; and a metadata-only diff of 1,000 items: bytes uploaded, and time until a node's search finds it.

Each wall (generated with titles, authors, categories and links, published into a node root under
``bench/work/``, cached) is served by a fresh ``tiler serve --workers 2``; queries are drawn from the wall's
own titles with a fixed seed: one word, a whole title, a word's first letters (a prefix), and a title word
with a category filter; each is asked once, one after the other on one kept-alive connection. The anchor runs
the same words in process over the same metadata loaded into an in-memory SQLite table:
``SELECT ... WHERE doc LIKE '%word%'`` (ANDed per word), counted and limited as the server does. Walls are
generated with ``--distinct-metadata``: every item has a title and author of its own. The diff: the 46-Gpx
wall published to its own SeaweedFS, a node (``tiler serve`` and ``boxlink run --interval 1``) synced,
1,000 titles changed and published; timed from ``tiler publish``'s start to the node's search answering the
new title.

    .venv/bin/python -m bench.search [--quick] [--work bench/work] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from bench import stats
from bench.bars import bar, format_bars
from bench.machine import VENV_BIN, load_average, machine
from bench.processes import Children, http_client, memory_of, run_and_report, wait_until
from bench.progress import console
from bench.results import RESULTS_DIR, WORK_DIR, write_results
from bench.tables import format_table
from bench.tileserver import start_tiler_serve
from gigaformat.itemsdb import ITEMS_INDEX_NAME
from gigaformat.layout import DatasetDir
from localcloud.seaweedfs import SeaweedS3
from tiler.local_publish import publish_local

DATASET = "covers"
BUCKET = "search-bench"
SEARCH_P50_MS, SEARCH_P99_MS, HIT_P50_MS = 5.0, 25.0, 1.0
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class SearchBenchSettings:
    work: Path = WORK_DIR
    walls: tuple[float, ...] = (46.0, 1000.0)  # gigapixels: ~100,000 and ~2,000,000 items
    seed: int = 1
    queries: int = 400  # per wall, of the four kinds together
    hits: int = 400
    like_queries: int = 40  # the anchor scans the whole table: fewer
    diff_items: int = 1000
    diff_wall: float = 46.0
    results_dir: Path | None = RESULTS_DIR

    def quick(self) -> SearchBenchSettings:
        return replace(self, walls=(46.0,), queries=120, hits=120, like_queries=12)


def prepare_wall(work: Path, gigapixels: float, seed: int, children: Children) -> Path:
    """``<work>/search-<G>gpx/``: the wall's source (with metadata) and a node root with it published."""
    wall = work / f"search-{gigapixels:g}gpx-seed{seed}"
    stamp = {"gigapixels": gigapixels, "seed": seed, "format": 2, "index": "tantivy", "metadata": "distinct"}
    folder = DatasetDir(wall / "node", DATASET)
    try:
        if json.loads((wall / "stamp.json").read_text()) == stamp and folder.down_generation() is not None:
            return wall
    except (OSError, ValueError):
        pass
    shutil.rmtree(wall, ignore_errors=True)
    wall.mkdir(parents=True)
    console.log(f"generating and publishing the {gigapixels:g}-Gpx wall for the search bench (cached)")
    children.run([VENV_BIN / "tiler", "generate", "--out", wall / "source", "--gigapixels", gigapixels, "--seed",
                  seed, "--distinct-metadata"], "search-generate.log", 3600)
    with console.status(f"publishing the {gigapixels:g}-Gpx wall into {folder.path}"):
        publish_local(wall / "source", folder)
    (wall / "stamp.json").write_text(json.dumps(stamp))
    return wall


def read_rows(source: Path) -> list[dict[str, str]]:
    with (source / "items.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def make_queries(rows: list[dict[str, str]], count: int, seed: int) -> list[tuple[str, dict[str, str]]]:
    """(kind, query parameters): one word, a whole title, a prefix, a word with a category filter."""
    rng = random.Random(seed)
    found = []
    for n in range(count):
        row = rng.choice(rows)
        words = _WORD.findall(row["title"])
        word = rng.choice(words)
        kind = ("one word", "whole title", "prefix", "word + filter")[n % 4]
        params = {"one word": {"q": word}, "whole title": {"q": row["title"]}, "prefix": {"q": word[:4]},
                  "word + filter": {"q": word, "category": row["category"]}}[kind]
        found.append((kind, params))
    return found


def timed_gets(base: str, paths: list[tuple[str, dict]]) -> list[float]:
    """Milliseconds of each GET, one after the other on one kept-alive connection (every answer must be 200
    or, for a hit-test, 404).

    The client is the standard library's ``http.client``: what is timed is the server and the loopback, not a
    heavy client. On this machine (2 shared CPUs) a hit-test's p50 was 1.51 ms through an ``httpx.Client``,
    0.67 ms through ``http.client`` and 0.47 ms through a bare socket; ``/healthz`` 1.01, 0.41 and 0.18 ms.
    """
    address = urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    spent = []

    def get(path: str, params: dict) -> tuple[int, bytes]:
        connection.request("GET", f"{path}?{urlencode(params, doseq=True)}" if params else path)
        response = connection.getresponse()
        return response.status, response.read()

    try:
        for path, params in paths[:20]:  # warm the connection and the database's first pages
            get(path, params)
        for path, params in paths:
            started = time.perf_counter()
            status, body = get(path, params)
            spent.append((time.perf_counter() - started) * 1e3)
            if status not in (200, 404):
                raise RuntimeError(f"{path} {params}: HTTP {status}: {body[:200]!r}")
    finally:
        connection.close()
    return spent


def like_anchor(rows: list[dict[str, str]], queries: list[tuple[str, dict[str, str]]]) -> dict:
    """The naive way on the same metadata, in process: every word a LIKE '%word%' over a table of it."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE meta (id TEXT PRIMARY KEY, doc TEXT)")
    db.executemany("INSERT INTO meta VALUES (?, ?)", ((r["id"], json.dumps(
        {k: r[k] for k in ("title", "author", "category", "url")}, ensure_ascii=False)) for r in rows))
    spent = []
    for _, params in queries:
        words = _WORD.findall(params["q"].lower())
        where = " AND ".join(["doc LIKE ?"] * len(words)) or "1"
        args = [f"%{w}%" for w in words]
        started = time.perf_counter()
        db.execute(f"SELECT count(*) FROM meta WHERE {where}", args).fetchone()
        db.execute(f"SELECT id FROM meta WHERE {where} LIMIT 20", args).fetchall()
        spent.append((time.perf_counter() - started) * 1e3)
    db.close()
    return stats.summarize(spent)


def fts_in_process(root: Path, queries: list[tuple[str, dict[str, str]]]) -> dict:
    """The server's own search, in process (no HTTP), for the ratio beside the anchor."""
    from tiler.dataset import LoadedDataset

    catalog = LoadedDataset.open(DatasetDir(root, DATASET)).catalog
    spent = []
    for _, params in queries:
        filters = tuple(sorted((k, v) for k, v in params.items() if k != "q"))
        started = time.perf_counter()
        catalog.search(params["q"], filters, 20, 0)
        spent.append((time.perf_counter() - started) * 1e3)
    return stats.summarize(spent)


def measure_wall(settings: SearchBenchSettings, gigapixels: float, children: Children) -> dict:
    wall = prepare_wall(settings.work, gigapixels, settings.seed, children)
    root = wall / "node"
    rows = read_rows(wall / "source")
    folder = DatasetDir(root, DATASET)
    index_folder = folder.generation_dir(folder.current_generation()) / ITEMS_INDEX_NAME
    queries = make_queries(rows, settings.queries, settings.seed)
    rng = random.Random(settings.seed + 1)
    hits = []
    for row in rng.sample(rows, min(settings.hits, len(rows))):
        hits.append(("/tiles/covers/items/at", {"x": int(row["x"]) + int(row["width"]) // 2,
                                                "y": int(row["y"]) + int(row["height"]) // 2}))
    server, base = start_tiler_serve(children, root, f"search-serve-{gigapixels:g}.log")
    try:
        search_ms = timed_gets(base, [("/tiles/covers/search", p) for _, p in queries])
        hit_ms = timed_gets(base, hits)
        memory = memory_of(server.pid)
    finally:
        children.stop(server)
    kinds = {}
    for (kind, _), ms in zip(queries, search_ms, strict=True):
        kinds.setdefault(kind, []).append(ms)
    anchor_queries = queries[:settings.like_queries]
    index_bytes = sum(p.stat().st_size for p in index_folder.iterdir())
    return {"gigapixels": gigapixels, "items": len(rows), "index_bytes": index_bytes,
            "search_ms": stats.summarize(search_ms), "by_kind": {k: stats.summarize(v) for k, v in kinds.items()},
            "hit_ms": stats.summarize(hit_ms), "memory": {k: memory[k] for k in ("pss_mb", "pss_anon_mb", "rss_mb")},
            "like_ms": like_anchor(rows, anchor_queries), "fts_ms": fts_in_process(root, anchor_queries)}


def measure_meta_diff(settings: SearchBenchSettings, children: Children) -> dict:
    """A metadata-only diff of ``diff_items`` items through S3 to a running node: bytes and time to visible."""
    wall = prepare_wall(settings.work, settings.diff_wall, settings.seed, children)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="search-bench-", dir=settings.work) as tmp:
        work = Path(tmp)
        source = work / "source"
        shutil.copytree(wall / "source", source)
        (work / "s3").mkdir()
        with SeaweedS3(work / "s3") as s3:
            s3.create_bucket(BUCKET)
            env.update(s3.env(), GIGATILE_BUCKET=BUCKET)
            tiler, boxlink = VENV_BIN / "tiler", VENV_BIN / "boxlink"
            with console.status("publishing the wall for the metadata diff (untimed)"):
                children.run([tiler, "publish", source, "--dataset", DATASET], "search-publish.log", 1200, env=env)
            root = work / "node"
            sync = children.start([boxlink, "run", "--root", root, "--interval", 1], "search-boxlink.log", env=env)
            server, base = start_tiler_serve(children, root, "search-node.log", extra=("--reload-seconds", "0.25"))
            try:
                rows = read_rows(source)
                for row in random.Random(settings.seed + 2).sample(rows, settings.diff_items):
                    row["title"] = f"{row['title']} Revised Quokka"
                with (source / "items.csv").open("w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
                    writer.writeheader()
                    writer.writerows(rows)
                started = time.monotonic()
                done = subprocess.run([tiler, "--log-level", "INFO", "publish", source, "--dataset", DATASET],
                                      env=env, capture_output=True, text=True, timeout=600)
                published = time.monotonic()
                if done.returncode != 0:
                    raise RuntimeError(f"tiler publish failed: {done.stderr[-2000:]}")
                uploaded = re.search(r"([0-9.]+) MB uploaded", done.stderr + done.stdout)

                def visible() -> bool:
                    found = http_client().get(base + "/tiles/covers/search", params={"q": "quokka", "limit": 1},
                                              timeout=10)
                    return found.status_code == 200 and found.json()["total"] == settings.diff_items

                wait_until(visible, 300, "the metadata diff on the node", interval=0.05)
                seen = time.monotonic()
            finally:
                children.stop(server)
                children.stop(sync)
    return {"items": settings.diff_items, "mb_uploaded": float(uploaded.group(1)) if uploaded else None,
            "publish_seconds": published - started, "visible_seconds": seen - started}


def run(settings: SearchBenchSettings) -> dict:
    settings.work.mkdir(parents=True, exist_ok=True)
    doc: dict = {"bench": "search", "issue": 15, "settings": {k: str(v) for k, v in asdict(settings).items()},
                 "machine": machine(), "load_average_start": load_average()}
    with Children(settings.work / "search-logs") as children:
        doc["walls"] = [measure_wall(settings, gp, children) for gp in settings.walls]
        doc["meta_diff"] = measure_meta_diff(settings, children)
    doc["load_average_end"] = load_average()
    bars = []
    for w in doc["walls"]:
        group = f"{w['gigapixels']:g} Gpx, {w['items']:,} items"
        bars += [bar(f"{group}: search p50 over HTTP", w["search_ms"]["p50"], "ms", SEARCH_P50_MS, key="search.p50",
                     group=group),
                 bar(f"{group}: search p99 over HTTP", w["search_ms"]["p99"], "ms", SEARCH_P99_MS, key="search.p99",
                     group=group),
                 bar(f"{group}: hit-test p50 over HTTP", w["hit_ms"]["p50"], "ms", HIT_P50_MS, key="search.hit-test",
                     group=group),
                 bar(f"{group}: search in process, p50", w["fts_ms"]["p50"], "ms", None, anchor="LIKE scan",
                     anchor_figure=w["like_ms"]["p50"], key="search.like", kind="info", group=group),
                 bar(f"{group}: items index", w["index_bytes"] / 1e6, "MB", None, key="search.index-size",
                     kind="info", group=group),
                 bar(f"{group}: tiler serve PSS (2 workers)", w["memory"]["pss_mb"], "MB", None, key="search.memory",
                     kind="info", group=group)]
    diff = doc["meta_diff"]
    bars += [bar(f"metadata-only diff of {diff['items']} items: uploaded", diff["mb_uploaded"] or 0.0, "MB", None,
                 key="search.meta-diff-bytes", kind="info"),
             bar(f"metadata-only diff of {diff['items']} items: publish start to search on a node",
                 diff["visible_seconds"], "s", None, key="search.meta-diff-visible", kind="info",
                 note=f"publish itself {diff['publish_seconds']:.1f} s")]
    doc["bars"] = bars
    if settings.results_dir is not None:
        doc["results_file"] = str(write_results("search", doc, settings.results_dir))
    return doc


def print_report(doc: dict) -> None:
    rows = []
    for w in doc["walls"]:
        for kind, s in w["by_kind"].items():
            rows.append([f"{w['gigapixels']:g} Gpx", kind, s["n"], f"{s['p50']:.2f}", f"{s['p99']:.2f}"])
        rows.append([f"{w['gigapixels']:g} Gpx", "hit-test", w["hit_ms"]["n"], f"{w['hit_ms']['p50']:.2f}",
                     f"{w['hit_ms']['p99']:.2f}"])
        rows.append([f"{w['gigapixels']:g} Gpx", "LIKE anchor (in process)", w["like_ms"]["n"],
                     f"{w['like_ms']['p50']:.2f}", f"{w['like_ms']['p99']:.2f}"])
    print(format_table(["wall", "query", "n", "p50 ms", "p99 ms"], rows))
    print("\n" + format_bars(doc["bars"]))
    if "results_file" in doc:
        print(f"results: {doc['results_file']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the ~100,000-item wall only, fewer queries")
    parser.add_argument("--work", type=Path, default=SearchBenchSettings.work)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    settings = SearchBenchSettings(work=args.work.resolve(), results_dir=args.results_dir)
    settings = settings.quick() if args.quick else settings
    return run_and_report(run, print_report, settings, "every child process was stopped", fail_on_bars=True)


if __name__ == "__main__":
    sys.exit(main())
