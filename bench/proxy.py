"""The proxy bar of issue 6: tile-proxy's cache-hit throughput beside nginx ``proxy_cache``, and the latency
a miss adds over asking the node directly, measured in one run on 127.0.0.1.

One ``tiler serve`` node (registered in a local SeaweedFS bucket), ``tile-proxy run`` in front of it, and
Debian's nginx, configured here (``proxy_cache_path``, ``proxy_cache_valid``, pid, logs and cache in a temp
dir, foreground with ``daemon off;``) in front of the same node. Both caches are warmed with the same tile
URLs; then the same load generator (``wrk`` with a Lua script over the same fixed-seed path list, or the
bounded Python client of ``bench.load`` when wrk is absent) measures hit requests/s for the same duration,
alternating rounds, best round of each. Every child is stopped by PID at the end.

    .venv/bin/python -m bench.proxy [--quick] [--seconds 10] [--connections 32] [--nginx-workers 1]

Needs ``nginx`` (and preferably ``wrk``): ``apt-get install -y nginx wrk``. Installs nothing itself.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx

from bench import walls
from bench.bars import bar, format_bars
from bench.load import run_load
from bench.machine import load_average, machine, tool_version
from bench.processes import (
    Children,
    free_port,
    http_client,
    http_status,
    memory_of,
    memory_row,
    run_and_report,
    wait_until,
)
from bench.progress import console
from bench.results import RESULTS_DIR, WORK_DIR, write_results
from bench.stats import summarize
from bench.tables import format_table
from bench.walls import DATASET, TILER
from localcloud.seaweedfs import SeaweedS3

BUCKET = "bench-proxy"
TILE_PROXY = Path(sys.executable).parent / "tile-proxy"

NGINX_CONF = """
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    access_log {access_log};
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy-temp;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    proxy_cache_path {tmp}/nginx-cache levels=1:2 keys_zone=tiles:32m max_size=2g inactive=7d use_temp_path=off;
    upstream node {{ server {node}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        location /tiles/ {{
            proxy_pass http://node;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache tiles;
            proxy_cache_valid 200 365d;
            proxy_cache_lock on;
            proxy_cache_use_stale error timeout updating;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class ProxyBenchSettings:
    work: Path = WORK_DIR
    gigapixels: float = 0.2           # the wall: ~4,000 tiles, enough distinct URLs for both sets below
    seed: int = 1
    hit_paths: int = 1000             # distinct versioned tiles warmed in both caches, then loaded
    miss_samples: int = 300           # tiles never asked of the proxy: direct vs through the proxy
    connections: int = 32
    seconds: float = 10.0
    rounds: int = 3                   # nginx and tile-proxy alternate; the best round of each counts
    wrk_threads: int = 1
    nginx_workers: int = 1            # tile-proxy is one process: same CPU budget by default
    access_log: bool = True           # both write an access log line per request (to a file)
    results_dir: Path | None = RESULTS_DIR

    def quick(self) -> ProxyBenchSettings:
        return replace(self, hit_paths=400, miss_samples=150, seconds=5.0, rounds=1)


def _tile_versions(node: str, paths: list[str]) -> list[str]:
    """Each path with ``?v=<its version>`` (read from the node), so both caches keep it immutable."""
    with httpx.Client(base_url=node, timeout=30) as client:
        out = []
        for path in paths:
            response = client.get(path)
            response.raise_for_status()
            out.append(f"{path}?v={response.headers['x-tile-version']}")
        return out


def _warm(base: str, paths: list[str], header: str) -> dict:
    """GET every path until the cache says HIT (two passes at most); counts of the second pass."""
    with httpx.Client(base_url=base, timeout=30) as client:
        for path in paths:
            client.get(path).raise_for_status()
        seen: dict[str, int] = {}
        for path in paths:
            response = client.get(path)
            key = f"{response.status_code} {response.headers.get(header, '-')}"
            seen[key] = seen.get(key, 0) + 1
    return seen


def _start_node(children: Children, root: Path, env: dict[str, str]):
    port = free_port()
    popen = children.start([TILER, "serve", "--root", root, "--datasets", DATASET, "--host", "127.0.0.1",
                    "--port", port, "--workers", "1", "--bucket", BUCKET, "--advertise", "127.0.0.1"],
                   "node.log", env=env)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_status(base + "/readyz") == 200, 120, "tiler serve /readyz")
    return popen, base


def _start_proxy(children: Children, tmp: Path, env: dict[str, str], node: str, access_log: bool):
    port = free_port()
    popen = children.start([TILE_PROXY, "run", "--bucket", BUCKET, "--host", "127.0.0.1", "--port", port,
                            "--cache-dir", tmp / "proxy-cache", "--poll-seconds", "1",
                            "--access-log", str(tmp / "proxy-access.log") if access_log else "off"],
                           "proxy.log", env=env)
    base = f"http://127.0.0.1:{port}"
    node_id = node.removeprefix("http://")

    def live() -> bool:
        try:
            return node_id in http_client().get(base + "/proxy/status", timeout=2).json()["live"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    wait_until(live, 60, "tile-proxy to see the node live")
    return popen, base


def _start_nginx(children: Children, tmp: Path, node: str, settings: ProxyBenchSettings):
    port = free_port()
    conf = tmp / "nginx.conf"
    access = f"{tmp}/nginx-access.log" if settings.access_log else "off"
    conf.write_text(NGINX_CONF.format(workers=settings.nginx_workers, tmp=tmp, node=node.removeprefix("http://"),
                                      port=port, access_log=access))
    popen = children.start(["nginx", "-e", tmp / "nginx-error.log", "-p", tmp, "-c", conf, "-g", "daemon off;"],
                           "nginx.log")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: popen.poll() is None and http_status(base + "/tiles/") is not None, 30,
                      f"nginx (see {tmp / 'nginx-error.log'})")
    return popen, base


def measure_hits(settings: ProxyBenchSettings, children: Children, tmp: Path, proxy: str, nginx: str,
                 paths: list[str]) -> dict:
    rounds: dict[str, list[dict]] = {"nginx": [], "tile-proxy": []}
    for _ in range(settings.rounds):
        for name, base in (("nginx", nginx), ("tile-proxy", proxy)):
            result = run_load(children, base, paths, tmp / "load", f"hits-{name}", settings.connections,
                              settings.seconds, threads=settings.wrk_threads)
            rounds[name].append(result)
            console.log(f"{name}: {result['requests_per_s']:,.0f} requests/s, p50 {result['p50_ms']:.2f} ms, "
                        f"non-200 {result['non200']}, socket errors {result['socket_errors']}")
    best = {name: max(results, key=lambda r: r["requests_per_s"]) for name, results in rounds.items()}
    return {"rounds": rounds, "best": best,
            "ratio": best["tile-proxy"]["requests_per_s"] / best["nginx"]["requests_per_s"]}


def measure_miss_overhead(node: str, proxy: str, nginx: str, paths: list[str], seed: int) -> dict:
    """Per tile (already in the node's own tile cache): the URL directly from the node, through tile-proxy and
    through nginx, neither of which has seen it (a MISS), in a random order per tile; sequential requests on
    kept-alive connections. The added latency is each one's p50 minus the direct p50."""
    rng = random.Random(seed)
    spent: dict[str, list[float]] = {"direct": [], "tile-proxy": [], "nginx": []}
    not_miss = {"tile-proxy": 0, "nginx": 0}
    bases = {"direct": node, "tile-proxy": proxy, "nginx": nginx}
    clients = {name: httpx.Client(base_url=base, timeout=30) for name, base in bases.items()}
    try:
        for path in paths:  # the node's tile cache and every connection warm (not timed)
            clients["direct"].get(path).raise_for_status()
        clients["tile-proxy"].get("/healthz")
        clients["nginx"].get("/tiles/")
        for path in paths:
            order = list(bases)
            rng.shuffle(order)
            for name in order:
                started = time.perf_counter()
                response = clients[name].get(path)
                spent[name].append((time.perf_counter() - started) * 1e3)
                response.raise_for_status()
                if name != "direct":
                    not_miss[name] += response.headers.get("x-cache") != "MISS"
    finally:
        for client in clients.values():
            client.close()
    stats = {name: summarize(values) for name, values in spent.items()}
    return {"ms": stats, "not_miss": not_miss,
            "overhead_p50_ms": stats["tile-proxy"]["p50"] - stats["direct"]["p50"],
            "nginx_overhead_p50_ms": stats["nginx"]["p50"] - stats["direct"]["p50"]}


def run(settings: ProxyBenchSettings) -> dict:
    if shutil.which("nginx") is None:
        raise RuntimeError("nginx is not installed; as root: apt-get install -y nginx wrk")
    settings.work.mkdir(parents=True, exist_ok=True)
    doc: dict = {"bench": "proxy", "settings": {k: str(v) for k, v in asdict(settings).items()},
                 "machine": machine(),
                 "tools": {"nginx": tool_version(["nginx", "-v"]),
                           "wrk": tool_version(["wrk", "--version"])}}
    with tempfile.TemporaryDirectory(prefix="proxy-bench-", dir=settings.work) as tmp_name, \
            Children(settings.work / "proxy-logs") as children:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx's workers run as an unprivileged user and must reach their cache here
        root = walls.prepare_wall(settings.work, settings.gigapixels, children, settings.seed)
        g = walls.wall_geometry(root)
        (tmp / "s3").mkdir()
        with SeaweedS3(tmp / "s3") as s3:
            s3.create_bucket(BUCKET)
            env = {**s3.env(), "GIGATILE_BUCKET": BUCKET}
            node_popen, node = _start_node(children, root, env)
            proxy_popen, proxy = _start_proxy(children, tmp, env, node, settings.access_log)
            nginx_popen, nginx = _start_nginx(children, tmp, node, settings)
            everything = walls.distinct_tile_paths(g, settings.hit_paths + settings.miss_samples, settings.seed)
            hit_set = _tile_versions(node, everything[:settings.hit_paths])
            miss_set = _tile_versions(node, everything[settings.hit_paths:])
            console.log(f"warming both caches with {len(hit_set)} tiles")
            doc["warm"] = {"tile-proxy": _warm(proxy, hit_set, "x-cache"), "nginx": _warm(nginx, hit_set, "x-cache")}
            doc["proxy_memory_before"] = memory_of(proxy_popen.pid)["rss_mb"]
            doc["hits"] = measure_hits(settings, children, tmp, proxy, nginx, hit_set)
            doc["proxy_memory_after"] = memory_of(proxy_popen.pid)["rss_mb"]
            doc["memory"] = [memory_row("tile-proxy", "after the hit load", proxy_popen.pid),
                             memory_row("nginx proxy_cache (master + workers)", "after the hit load",
                                        nginx_popen.pid),
                             memory_row("tiler serve --workers 1 (the node)", "after the hit load", node_popen.pid)]
            console.log(f"miss overhead over {len(miss_set)} tiles")
            doc["miss"] = measure_miss_overhead(node, proxy, nginx, miss_set, settings.seed)
            doc["proxy_status"] = http_client().get(proxy + "/proxy/status", timeout=5).json()["cache"]
    best = doc["hits"]["best"]
    doc["bars"] = [
        bar("cache-hit requests/s", best["tile-proxy"]["requests_per_s"], "requests/s", 0.6, at_least=True,
            anchor="nginx proxy_cache", anchor_figure=best["nginx"]["requests_per_s"], key="proxy.hits"),
        bar("miss overhead p50", doc["miss"]["overhead_p50_ms"], "ms", 1.0, anchor="nginx's",
            anchor_figure=doc["miss"]["nginx_overhead_p50_ms"], judged_on="figure", key="proxy.miss"),
        bar("cache-hit non-200 and socket errors", sum(r["non200"] + r["socket_errors"] for r in best.values()),
            "responses", 0, key="proxy.errors", kind="check"),
    ]
    doc["machine"]["load_average_after"] = load_average()
    if settings.results_dir is not None:
        doc["results_file"] = str(write_results("proxy", doc, settings.results_dir))
    return doc


def print_report(doc: dict) -> None:
    hits, miss = doc["hits"]["best"], doc["miss"]
    rows = [(name, f"{r['requests_per_s']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", r["non200"],
             r["socket_errors"], r["tool"]) for name, r in hits.items()]
    print(f"cache hits, {doc['settings']['connections']} connections, {doc['settings']['seconds']} s, "
          f"best of {doc['settings']['rounds']} (warm: {doc['warm']})")
    print(format_table(("server", "requests/s", "p50 ms", "p99 ms", "non-200", "socket errors", "load"), rows))
    print(f"\ntile-proxy / nginx = {doc['hits']['ratio']:.2f}   (tile-proxy RSS {doc['proxy_memory_before']:.0f} MB "
          f"before the load, {doc['proxy_memory_after']:.0f} MB after)")
    ms = miss["ms"]
    print(f"\nmiss over {ms['direct']['n']} tiles, p50: direct {ms['direct']['p50']:.3f} ms, tile-proxy "
          f"{ms['tile-proxy']['p50']:.3f} ms (+{miss['overhead_p50_ms']:.3f}), nginx {ms['nginx']['p50']:.3f} ms "
          f"(+{miss['nginx_overhead_p50_ms']:.3f}); answers not MISS: {miss['not_miss']}")
    print("\n" + format_bars(doc["bars"]))
    print(f"\nload average {doc['machine']['load_average']} before, {doc['machine']['load_average_after']} after; "
          f"{doc['machine']['cores']} cores")
    if "results_file" in doc:
        print(f"results: {doc['results_file']}")


def parse_args(argv: list[str] | None) -> ProxyBenchSettings:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tiles, 5 s, one round")
    parser.add_argument("--work", type=Path, default=ProxyBenchSettings.work)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--connections", type=int, default=ProxyBenchSettings.connections)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--nginx-workers", type=int, default=ProxyBenchSettings.nginx_workers)
    parser.add_argument("--no-access-log", action="store_true", help="neither server writes an access log")
    parser.add_argument("--no-results", action="store_true", help="do not write bench/results/*.json")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results JSON goes")
    args = parser.parse_args(argv)
    settings = ProxyBenchSettings(work=args.work, connections=args.connections, nginx_workers=args.nginx_workers,
                                  access_log=not args.no_access_log, results_dir=args.results_dir)
    settings = settings.quick() if args.quick else settings
    if args.seconds is not None:
        settings = replace(settings, seconds=args.seconds)
    if args.rounds is not None:
        settings = replace(settings, rounds=args.rounds)
    if args.no_results:
        settings = replace(settings, results_dir=None)
    return settings


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    return run_and_report(run, print_report, settings, fail_on_bars=True)


if __name__ == "__main__":
    sys.exit(main())
