"""Shared pieces of the benches under bench/: the machine, statistics, process memory from /proc,
child processes stopped by PID, results JSON, and a bounded HTTP load generator.

The load generator is ``wrk`` with a Lua script of paths when ``wrk`` is on PATH, else the bounded
asyncio + httpx client at the bottom of this module, run as its own process
(``python -m bench.common ...``). Both print one ``JSON {...}`` line with the same keys.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np
import pyvips
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tiler.dataset import LoadedDataset
from tiler.levels import Geometry
from tiler.local_publish import publish_local
from tiler.localstore import DatasetDir

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
TILER = Path(sys.executable).parent / "tiler"
DATASET = "covers"
console = Console(stderr=True)  # progress and step notes; the report itself goes to stdout


# --- the machine ----------------------------------------------------------------------------------------------

def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def machine() -> dict:
    """Where and with what the figures were measured."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:")))
    versions = {name: metadata.version(name) for name in ("numpy", "numba", "pillow", "pyvips", "uvicorn", "httpx")}
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "memory_mb": mem_kb // 1024,
            "kernel": platform.release(), "python": platform.python_version(), "versions": versions,
            "load_average": load_average()}


def tool_version(args: Sequence[str]) -> str | None:
    """First line of ``args`` (e.g. ``vips --version``), or None if the tool is absent."""
    if shutil.which(args[0]) is None:
        return None
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=10)
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else None


# --- statistics -----------------------------------------------------------------------------------------------

def summarize(values: Sequence[float]) -> dict:
    """n, min, p50, p90, p99, max and mean of ``values`` (same unit; percentiles interpolate linearly)."""
    if not len(values):
        return {"n": 0}
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99]))
    return {"n": len(values), "min": min(values), "p50": p50, "p90": p90, "p99": p99, "max": max(values),
            "mean": float(np.mean(values))}


def time_calls(func: Callable[[], object], count: int) -> list[float]:
    """Milliseconds taken by each of ``count`` calls of ``func``."""
    spent = []
    for _ in range(count):
        started = time.perf_counter_ns()
        func()
        spent.append((time.perf_counter_ns() - started) / 1e6)
    return spent


# --- process memory -------------------------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children read from /proc/<pid>/task/*/children)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def _rollup(pid: int) -> dict[str, int]:
    """Fields of /proc/<pid>/smaps_rollup in kB (empty if the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return {}
    return {parts[0].rstrip(":"): int(parts[1]) for parts in (line.split() for line in lines[1:]) if len(parts) >= 2}


def memory_of(pid: int) -> dict:
    """RSS and PSS (MB, 10^6 bytes) summed over ``pid`` and its descendants, with each process listed."""
    rows = []
    for each in descendants(pid):
        fields = _rollup(each)
        if not fields:
            continue
        try:
            name = Path(f"/proc/{each}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
        except OSError:
            name = "?"
        rows.append({"pid": each, "cmd": name.strip(), **{k.lower() + "_mb": fields.get(k, 0) * 1024 / 1e6
                                                          for k in ("Rss", "Pss", "Pss_Anon", "Pss_File")}})
    return {"rss_mb": sum(r["rss_mb"] for r in rows), "pss_mb": sum(r["pss_mb"] for r in rows),
            "pss_anon_mb": sum(r["pss_anon_mb"] for r in rows), "pss_file_mb": sum(r["pss_file_mb"] for r in rows),
            "processes": rows}


# --- child processes ------------------------------------------------------------------------------------------

class Children:
    """Child processes, each in its own session; all stopped by PID when the ``with`` block ends, however."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.popens: list[subprocess.Popen] = []

    def __enter__(self) -> Children:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        for popen in reversed(self.popens):
            self.stop(popen)

    def start(self, args: Sequence[str], log_name: str, **kwargs) -> subprocess.Popen:
        with (self.log_dir / log_name).open("ab") as log:
            popen = subprocess.Popen([str(a) for a in args], stdout=kwargs.pop("stdout", log), stderr=log,
                                     start_new_session=True, **kwargs)
        self.popens.append(popen)
        return popen

    def run(self, args: Sequence[str], log_name: str, timeout: float, **kwargs) -> float:
        """Run to the end; return its wall seconds. RuntimeError if it fails or runs past ``timeout`` s."""
        started = time.perf_counter()
        popen = self.start(args, log_name, **kwargs)
        try:
            code = popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(popen)
            raise RuntimeError(f"{args[0]} ran past {timeout:.0f} s; see {self.log_dir / log_name}") from None
        if code != 0:
            raise RuntimeError(f"{args[0]} {args[1]} failed (exit {code}); see {self.log_dir / log_name}")
        return time.perf_counter() - started

    def stop(self, popen: subprocess.Popen, grace: float = 10.0) -> None:
        """SIGTERM the child's own process group (its PID), wait, then SIGKILL it."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if popen.poll() is not None:
                break
            try:
                os.killpg(popen.pid, sig)
                popen.wait(wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        if popen in self.popens:
            self.popens.remove(popen)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.HTTPError:
        return None


def progress_bar(auto_refresh: bool = True) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, auto_refresh=auto_refresh)


# --- walls and the tile server --------------------------------------------------------------------------------

def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc) + "\n")


def prepare_wall(work: Path, gigapixels: float, children: Children, seed: int = 1, unique: int | None = None,
                 rebuild: bool = False) -> Path:
    """A node root (``<work>/wall-<G>gpx-seed<S>/node``) with the wall published as dataset ``covers``;
    reused while ``synch.down`` is there and ``stamp.json`` records the same generate arguments."""
    wall = work / f"wall-{gigapixels:g}gpx-seed{seed}"
    stamp = {"gigapixels": gigapixels, "unique": unique, "seed": seed}
    folder = DatasetDir(wall / "node", DATASET)
    if not rebuild and folder.down_generation() is not None and read_json(wall / "stamp.json") == stamp:
        return folder.root
    shutil.rmtree(wall, ignore_errors=True)
    wall.mkdir(parents=True)
    args = [TILER, "generate", "--out", wall / "source", "--gigapixels", gigapixels, "--seed", seed]
    console.log(f"generating the {gigapixels:g}-Gpx wall in {wall}")
    children.run(args + (["--unique", unique] if unique else []), "generate.log", 900)
    with console.status(f"publishing the {gigapixels:g}-Gpx wall into {folder.path}"):
        publish_local(wall / "source", folder)
    write_json(wall / "stamp.json", stamp)
    return folder.root


def wall_geometry(root: Path, dataset: str = DATASET) -> Geometry:
    canvas = DatasetDir(root, dataset).load_current_state().canvas
    return Geometry(canvas.width, canvas.height)


def random_tile_paths(g: Geometry, count: int, seed: int, dataset: str = DATASET) -> list[str]:
    """Tile URLs over all levels: a level drawn uniformly, then a tile of it uniformly (so coarse
    levels repeat, as they do for viewers); the same seed gives the same paths."""
    rng = random.Random(seed)
    paths = []
    for _ in range(count):
        z = rng.randrange(g.top + 1)
        cols, rows = g.tile_counts(z)
        paths.append(f"/tiles/{dataset}/{z}/{rng.randrange(cols)}/{rng.randrange(rows)}.jpg")
    return paths


def distinct_tile_paths(g: Geometry, count: int, seed: int, dataset: str = DATASET) -> list[str]:
    """``count`` different tiles of the whole pyramid, each tile equally likely (so mostly the deepest
    levels); cycled only if the pyramid has fewer tiles."""
    counts = [(z, *g.tile_counts(z)) for z in range(g.top + 1)]
    starts = list(itertools.accumulate((cols * rows for _, cols, rows in counts), initial=0))
    paths = []
    for i in random.Random(seed).sample(range(starts[-1]), min(count, starts[-1])):
        k = bisect.bisect_right(starts, i) - 1
        z, cols, _ = counts[k]
        paths.append(f"/tiles/{dataset}/{z}/{(i - starts[k]) % cols}/{(i - starts[k]) // cols}.jpg")
    return (paths * -(-count // len(paths)))[:count]


def describe_wall(ds: LoadedDataset) -> dict:
    g = ds.geometry
    return {"width": g.width, "height": g.height, "gigapixels": g.width * g.height / 1e9, "items": ds.items,
            "top_level": g.top, "overview_level": ds.overview_level, "generation": ds.generation}


def flatten_wall(ds: LoadedDataset, wall: Path, strip: int = 512) -> Path:
    """The top level as one uncompressed VIPS image (``flat.v``, not timed); reused while it matches."""
    g, target, stamp = ds.geometry, wall / "flat.v", {"generation": ds.generation}
    if target.exists() and read_json(wall / "flat.json") == stamp:
        return target
    raw = wall / "flat.raw"
    with raw.open("wb") as out, progress_bar() as bar:
        task = bar.add_task("flatten", total=-(-g.height // strip))
        for y0 in range(0, g.height, strip):
            out.write(np.ascontiguousarray(ds.render_level_window(g.top, 0, y0, g.width, min(strip, g.height - y0))))
            bar.advance(task)
    image = pyvips.Image.rawload(str(raw), g.width, g.height, 3).copy(interpretation="srgb")
    for name in image.get_fields():
        if name.startswith(("exif", "xmp", "icc", "iptc")):
            image.remove(name)
    with console.status("writing flat.v"):
        image.write_to_file(str(target))
    raw.unlink()
    write_json(wall / "flat.json", stamp)
    return target


def start_tiler_serve(children: Children, root: Path, log_name: str, workers: int = 2,
                      datasets: str = DATASET) -> tuple[subprocess.Popen, str]:
    """``tiler serve`` on a free 127.0.0.1 port; returns (process, base URL) once /readyz has been 200
    twenty times in a row (connections land on any worker, so every worker has loaded)."""
    port = free_port()
    server = children.start([TILER, "serve", "--root", root, "--datasets", datasets, "--host", "127.0.0.1",
                             "--port", port, "--workers", workers], log_name)
    base = f"http://127.0.0.1:{port}"
    streak = 0

    def ready() -> bool:
        nonlocal streak
        if server.poll() is not None:
            raise RuntimeError(f"tiler serve exited ({server.returncode}); see {children.log_dir / log_name}")
        streak = streak + 1 if http_status(base + "/readyz") == 200 else 0
        return streak >= 20

    wait_until(ready, 180, "tiler serve /readyz")
    return server, base


def cache_lookups(base: str) -> dict[str, float]:
    """Encoded-tile cache hits and misses so far, summed over workers (from /metrics)."""
    text = httpx.get(base + "/metrics", timeout=5).text
    found = re.findall(r'^gigatile_tile_cache_total\{result="(\w+)"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return {result: float(value) for result, value in found}


# --- results --------------------------------------------------------------------------------------------------

def write_results(name: str, doc: dict, directory: Path = RESULTS_DIR) -> Path:
    """Write ``doc`` to ``<directory>/<UTC timestamp>-<name>.json`` and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{name}.json"
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path


def bar(name: str, figure: float, unit: str, limit: float, *, at_least: bool = False, anchor: str | None = None,
        anchor_figure: float | None = None) -> dict:
    """One bar: ``figure`` (or, with an anchor, figure / anchor_figure) against ``limit``."""
    ratio = figure / anchor_figure if anchor_figure else None
    compared = figure if ratio is None else ratio
    rule = ("≥ " if at_least else "≤ ") + (f"{limit:g} {unit}" if ratio is None else f"{limit:g}× {anchor}")
    return {"name": name, "figure": figure, "unit": unit, "anchor": anchor, "anchor_figure": anchor_figure,
            "ratio": ratio, "bar": rule, "pass": compared >= limit if at_least else compared <= limit}


def number(value: float) -> str:
    """3 significant digits below 1000, whole numbers with thousands separators above."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def format_bars(bars: Sequence[dict]) -> str:
    rows = [(b["name"], f"{number(b['figure'])} {b['unit']}",
             "" if b["anchor_figure"] is None else f"{b['anchor']} {number(b['anchor_figure'])} {b['unit']}",
             "" if b["ratio"] is None else f"{b['ratio']:.2f}×", b["bar"], "PASS" if b["pass"] else "FAIL")
            for b in bars]
    return format_table(("bar", "figure", "anchor", "ratio", "rule", "result"), rows)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain left-aligned columns (pastes into issues and READMEs as it is)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


# --- bounded HTTP load ----------------------------------------------------------------------------------------

# Thread k of T takes paths k, k+T, k+2T, ... and, after `limit` responses, writes <marker>k and stops; wrk's
# main thread still sleeps out -d, so run_load sends it SIGINT (it then reports as usual) once all markers exist.
# done() prints one JSON line.
WRK_SCRIPT = """
local threads, made = {}, 0
function setup(thread)
  thread:set("id", made); made = made + 1; table.insert(threads, thread)
end
function init(args)
  paths = {}
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  step, limit, marker, i, seen, non200 = tonumber(args[2]), tonumber(args[3]), args[4], id, 0, 0
end
function request()
  local path = paths[(i % #paths) + 1]
  i = i + step
  return wrk.format("GET", path)
end
function response(status, headers, body)
  seen = seen + 1
  if status ~= 200 then non200 = non200 + 1 end
  if limit > 0 and seen == limit then io.open(marker .. id, "w"):close(); wrk.thread:stop() end
end
function done(summary, latency, requests)
  local non = 0
  for _, t in ipairs(threads) do non = non + t:get("non200") end
  local e = summary.errors
  io.write(string.format('JSON {"requests": %d, "seconds": %.6f, "bytes": %d, "non200": %d, ' ..
    '"socket_errors": %d, "timeouts": %d, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\\n',
    summary.requests, summary.duration / 1e6, summary.bytes, non, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
"""


def run_load(children: Children, base_url: str, paths: Sequence[str], work: Path, name: str, connections: int,
             seconds: float, max_requests: int = 0, threads: int = 2) -> dict:
    """GET ``paths`` (cycled) from a second process with ``connections`` open connections until
    ``max_requests`` responses (0: no count limit) or ``seconds``, whichever comes first."""
    work.mkdir(parents=True, exist_ok=True)
    paths_file = work / f"{name}.paths"
    paths_file.write_text("\n".join(paths) + "\n")
    markers = [work / f"{name}.stopped{k}" for k in range(threads)]
    for marker in markers:
        marker.unlink(missing_ok=True)
    if shutil.which("wrk"):
        (work / "paths.lua").write_text(WRK_SCRIPT)
        args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, math.ceil(seconds))}s", "--timeout", "10s",
                "-s", work / "paths.lua", base_url, "--", paths_file, threads, -(-max_requests // threads),
                work / f"{name}.stopped"]
        tool = tool_version(["wrk", "--version"]) or "wrk"
    else:
        args = [sys.executable, "-m", "bench.common", "--base", base_url, "--paths", paths_file,
                "--connections", connections, "--seconds", seconds, "--max-requests", max_requests]
        tool, markers = f"python httpx {metadata.version('httpx')}", []
    out_file = work / f"{name}.out"
    with out_file.open("w") as out:
        popen = children.start(args, f"{name}.log", stdout=out, cwd=BENCH_DIR.parent)
    deadline = time.monotonic() + seconds + 60
    while popen.poll() is None and time.monotonic() < deadline:
        if max_requests and markers and all(m.exists() for m in markers):
            popen.send_signal(signal.SIGINT)  # every wrk thread is done: end the sleep, get the report
            markers = []
        time.sleep(0.02)
    children.stop(popen)
    line = next((x for x in out_file.read_text().splitlines() if x.startswith("JSON ")), None)
    if popen.returncode != 0 or line is None:
        raise RuntimeError(f"load generator failed (exit {popen.returncode}); see {out_file}, {name}.log")
    result = json.loads(line[5:])
    result.update(tool=tool, connections=connections, requests_per_s=result["requests"] / max(result["seconds"], 1e-9))
    return result


async def _client(base: str, paths: list[str], connections: int, seconds: float, max_requests: int) -> dict:
    latencies: list[float] = []
    counts = {"non200": 0, "socket_errors": 0, "timeouts": 0, "bytes": 0}
    state = {"next": 0}
    deadline = time.perf_counter() + seconds
    limit = max_requests or math.inf

    async def connection(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline and state["next"] < limit:
            path = paths[state["next"] % len(paths)]
            state["next"] += 1
            started = time.perf_counter()
            try:
                response = await client.get(base + path)
            except httpx.TimeoutException:
                counts["timeouts"] += 1
                continue
            except httpx.HTTPError:
                counts["socket_errors"] += 1
                continue
            latencies.append((time.perf_counter() - started) * 1e3)
            counts["bytes"] += len(response.content)
            counts["non200"] += response.status_code != 200

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:
        await asyncio.gather(*(connection(client) for _ in range(connections)))
    stats = summarize(latencies)
    return {"requests": len(latencies), "seconds": time.perf_counter() - started, **counts,
            **{f"{k}_ms": stats.get(k, math.nan) for k in ("p50", "p90", "p99", "max")}}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.common --base URL --paths FILE ...``: the load generator when wrk is absent."""
    parser = argparse.ArgumentParser(prog="python -m bench.common", description="bounded HTTP load (no wrk)")
    parser.add_argument("--base", required=True)
    parser.add_argument("--paths", type=Path, required=True, help="one URL path per line")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=0, help="0: until --seconds")
    args = parser.parse_args(argv)
    result = asyncio.run(_client(args.base, args.paths.read_text().split(), args.connections, args.seconds,
                                 args.max_requests))
    print("JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
