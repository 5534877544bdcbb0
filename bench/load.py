"""Bounded HTTP load from a second process: ``wrk`` with a Lua script of paths when ``wrk`` is on PATH, else
the bounded asyncio + httpx client below, run as its own process (``python -m bench.load ...``). Both print
one ``JSON {...}`` line with the same keys, which ``run_load`` returns as a dict."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import httpx

from bench.machine import tool_version
from bench.processes import Children
from bench.stats import summarize

REPO = Path(__file__).resolve().parents[1]

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
        args = [sys.executable, "-m", "bench.load", "--base", base_url, "--paths", paths_file,
                "--connections", connections, "--seconds", seconds, "--max-requests", max_requests]
        tool, markers = f"python httpx {metadata.version('httpx')}", []
    out_file = work / f"{name}.out"
    with out_file.open("w") as out:
        popen = children.start(args, f"{name}.log", stdout=out, cwd=REPO)
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
    """``python -m bench.load --base URL --paths FILE ...``: the load generator when wrk is absent."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description="bounded HTTP load (no wrk)")
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
