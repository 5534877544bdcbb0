"""``make demo``: the whole gigatile life cycle on this machine, on a real S3 server.

SeaweedFS (S3) → ``tiler generate`` (the 46-gigapixel covers wall) → ``tiler publish`` →
``node-bootstrap release`` → two render nodes launched with ``scripts/ec2_render.sh --local`` (IMDSv2
emulator, bootstrap, boxlink, self-registration: the real path) → ``tile-proxy`` with the viewer at
http://127.0.0.1:8000/. Then it serves until Ctrl-C (or SIGTERM, or ``make demo-stop``) and stops everything
it started. One demo per work folder (``demo-work/``, locked while it runs: demo_session.py); a second run
reuses what is still valid (demo_reuse.py).

``python scripts/demo.py update`` (``make demo-update``) changes a few covers where the viewer opens,
publishes the diff and waits until both nodes serve it (demo_update.py): the open viewer shows the new
covers at its next look, without a reload.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from bootstrap.launch.localnode import read_launch
from bootstrap.node.status import runs_command
from gigaformat import commandline
from gigaformat.commandline import flag
from gigaformat.layout import NodeLayout
from gigaformat.registration import PREFIX as REGISTRY_PREFIX
from gigaformat.s3 import make_client
from localcloud.seaweedfs import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, SeaweedS3
from tiler.generate import DEFAULT_UNIQUE, generate_wall
from tiler.publish import publish

import demo_update
from demo_reuse import (
    plan_publish,
    read_stamp,
    record_publish,
    record_release,
    release_is_current,
    sources_digest,
    write_stamp,
)
from demo_session import Record, Session, s3_variables, stop_holder, write_env

console = Console(soft_wrap=True, highlight=False)
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EC2_RENDER = REPO / "scripts" / "ec2_render.sh"
BUCKET = "gigatile-demo"
DATASET = "covers"
NODES = ("127.0.0.2", "127.0.0.3")
NODE_PORT = 8080
PROXY = ("127.0.0.1", 8000)
VIEWER = f"http://{PROXY[0]}:{PROXY[1]}/"


def step(text: str) -> float:
    console.print(f"[bold cyan]==>[/] {text}")
    return time.monotonic()


def shown(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it (as a user would type it)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def run(cmd: list[str], env: dict[str, str], what: str, timeout: float = 600) -> str:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{(result.stderr or result.stdout)[-2000:]}")
    return result.stdout


def busy_addresses() -> list[str]:
    """The demo's fixed addresses that something else listens on already."""
    busy = []
    for host, port in [PROXY, *((a, NODE_PORT) for a in NODES)]:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                busy.append(f"{host}:{port}")
    return busy


def end_group(pid: int, grace: float) -> None:
    """SIGTERM process group ``pid``, then SIGKILL it after ``grace`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def registered(client) -> set[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=REGISTRY_PREFIX)
    return {o["Key"][len(REGISTRY_PREFIX):] for o in listed.get("Contents", [])}


class Demo:
    """Everything one ``make demo`` starts, and its stop."""

    def __init__(self, session: Session, gigapixels: float):
        self.session, self.work, self.gigapixels = session, session.work, gigapixels
        self.server: SeaweedS3 | None = None
        self.node_roots: list[Path] = []
        self.proxy: subprocess.Popen | None = None
        self.record = Record(pid=os.getpid(), started=time.time(), work=str(self.work), viewer=VIEWER,
                             bucket=BUCKET, nodes=[f"http://{a}:{NODE_PORT}" for a in NODES])

    def up(self) -> None:
        started = time.monotonic()
        self.stop_leftovers()
        if busy := busy_addresses():
            raise RuntimeError(f"{', '.join(busy)} already in use: another demo (from another folder?) or another "
                               "program listens there; stop it first (ss -ltnp shows who)")
        self.session.save(self.record)
        env = self.start_s3()
        client = make_client()
        wall = self.prepare_wall()
        self.publish_wall(client, wall)
        self.release(client, env)
        self.launch_nodes(env, client)
        self.start_proxy(env)
        self.record.state = "running"
        self.session.save(self.record)
        console.print(f"\n[bold green]browsable in {time.monotonic() - started:.0f} s:[/] open {VIEWER}")
        self.tour()

    def stop_leftovers(self) -> None:
        """Stop what a demo that was killed (SIGKILL, a crash) left running from this folder."""
        old = self.session.left_behind()
        roots = [self.work / "nodes" / a for a in NODES] + [Path(r) for r in (old.node_roots if old else [])]
        left = [r for r in dict.fromkeys(roots) if (launch := read_launch(NodeLayout(r))) and not launch.stopped]
        if old is None and not left:
            return
        step("stopping what an earlier demo, killed, left running from this folder")
        if old is not None and old.proxy_pid and runs_command(old.proxy_pid, "tile-proxy"):
            end_group(old.proxy_pid, 10)
        for root in left:
            subprocess.run([str(EC2_RENDER), "--local", "--stop", str(root)], capture_output=True, timeout=90)
        if old is not None and old.s3_pid and runs_command(old.s3_pid, "weed"):
            end_group(old.s3_pid, 2)

    def start_s3(self) -> dict[str, str]:
        (self.work / "s3").mkdir(parents=True, exist_ok=True)
        step("starting SeaweedFS (a real S3 server) on 127.0.0.1")
        ports = self.work / "s3-ports.json"
        self.server = SeaweedS3(self.work / "s3", preferred_ports=read_stamp(ports))  # same endpoint as last time
        self.server.start()
        write_stamp(ports, self.server.ports)
        variables = s3_variables(self.server.endpoint_url, ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION, BUCKET)
        os.environ.update(variables)
        write_env(self.session.env_path, variables)
        try:
            make_client().head_bucket(Bucket=BUCKET)
        except Exception:
            self.server.create_bucket(BUCKET)
        self.record.s3_endpoint, self.record.s3_pid = self.server.endpoint_url, self.server.pid or 0
        self.session.save(self.record)
        console.print(f"    S3 endpoint {self.server.endpoint_url}, bucket {BUCKET} "
                      f"(settings for the CLIs: source {shown(self.session.env_path)})")
        return dict(os.environ)

    def prepare_wall(self) -> Path:
        wall, stamp = self.work / "wall", self.work / "wall.json"
        wanted = {"gigapixels": self.gigapixels, "unique": DEFAULT_UNIQUE, "seed": 1}
        step(f"the covers wall ({self.gigapixels:g} gigapixels)")
        if read_stamp(stamp) == wanted and (wall / "items.csv").is_file():
            console.print(f"    reusing {shown(wall)} (with the changes make demo-update made to it)")
            return wall
        summary = generate_wall(wall, self.gigapixels, DEFAULT_UNIQUE, 1, progress=console.is_terminal)
        write_stamp(stamp, wanted)
        console.print(f"    {summary.width} x {summary.height} px ({summary.width * summary.height / 1e9:.1f} "
                      f"Gpx), {summary.items} covers ({summary.unique} distinct) in {summary.seconds:.1f} s")
        return wall

    def publish_wall(self, client, wall: Path) -> None:
        stamp = self.work / "published.json"
        plan = plan_publish(client, BUCKET, DATASET, wall, stamp)
        mark = step(f"publishing it to s3://{BUCKET}/data/{DATASET}/: {plan.reason}" if plan.publish
                    else f"the published wall: {plan.reason}")
        if not plan.publish:
            return
        result = publish(wall, DATASET, BUCKET, client, progress=demo_update.PhaseLines(console.print))
        record_publish(stamp, result.generation, wall)
        console.print(f"    generation {result.generation}" + (
            f" ({' + '.join(result.kinds)}): {result.bytes_uploaded / 1e6:.0f} MB in {time.monotonic() - mark:.1f} s"
            if result.kinds else " (the same wall: nothing to publish)"))

    def release(self, client, env: dict[str, str]) -> None:
        stamp = self.work / "release.json"
        current, version = release_is_current(client, BUCKET, REPO, stamp)
        if current:
            step(f"the release: {version} is this code (sources unchanged), not rebuilt")
            return
        mark = step("releasing this code to S3 (node-bootstrap release: wheel, kernels, fresh bootstrap)")
        sources = sources_digest(REPO)  # before the build: an edit during it is released next time
        run([str(BIN / "node-bootstrap"), "release", "--bucket", BUCKET, "--source", str(REPO)], env, "release")
        version = record_release(client, BUCKET, REPO, stamp, sources)
        console.print(f"    released {version} in {time.monotonic() - mark:.1f} s")

    def launch_nodes(self, env: dict[str, str], client) -> None:
        mark = step(f"launching {len(NODES)} render nodes: scripts/ec2_render.sh --local (IMDSv2, bootstrap, boxlink)")
        for address in NODES:
            root = self.work / "nodes" / address
            self.node_roots.append(root)  # before the launch: a stop must find it even if Ctrl-C comes now
            self.record.node_roots = [str(r) for r in self.node_roots]
            self.session.save(self.record)
            run([str(EC2_RENDER), "--local", "--bucket", BUCKET, "--root", str(root), "--address", address,
                 "--port", str(NODE_PORT), "--sync-interval", "1"], env, f"launch {address}", timeout=120)
        wanted = {f"{a}.p{NODE_PORT}" for a in NODES}
        wait_for(lambda: wanted <= registered(client), 600, "both nodes to replicate the wall and register in "
                 f"s3://{BUCKET}/proxy/ (logs: {shown(self.work / 'nodes')}/*/data/log/)")
        console.print(f"    registered: {', '.join(sorted(wanted))} after {time.monotonic() - mark:.1f} s")

    def start_proxy(self, env: dict[str, str]) -> None:
        step(f"starting tile-proxy on {PROXY[0]}:{PROXY[1]} (polls s3://{BUCKET}/proxy/, caches on disk)")
        with (self.work / "proxy.log").open("ab") as log:
            self.proxy = subprocess.Popen(
                [str(BIN / "tile-proxy"), "run", "--bucket", BUCKET, "--host", PROXY[0], "--port", str(PROXY[1]),
                 "--cache-dir", str(self.work / "proxy-cache"), "--cache-size", "2G", "--poll-seconds", "1",
                 "--viewer-dir", str(REPO / "tiler" / "viewer"), "--access-log", str(self.work / "proxy-access.log")],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.record.proxy_pid = self.proxy.pid
        self.session.save(self.record)

        def live() -> bool:
            if self.proxy.poll() is not None:
                raise RuntimeError(f"tile-proxy exited with code {self.proxy.returncode}; see {self.work}/proxy.log")
            try:
                status = httpx.get(f"{VIEWER}proxy/status", timeout=1).json()
                return sum(1 for b in status.get("backends", []) if b.get("state") == "live") >= len(NODES)
            except (httpx.HTTPError, ValueError):
                return False
        wait_for(live, 60, "the proxy to see both nodes live")

    def tour(self) -> None:
        env, node = shown(self.session.env_path), shown(self.node_roots[0])
        variables = s3_variables(self.record.s3_endpoint, ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION, BUCKET)
        console.print(f"""
  the viewer                 {VIEWER}   (keys: + − zoom ×2, 0 the whole wall, H back to the start, 1 for 1:1)
  the bookstore              click a book for its card, / to search, {VIEWER}?item=<id> opens on a book
  change a few covers        make demo-update   (in another terminal; the open viewer shows them without a reload)
  the demo's S3, for CLIs    source {env}   ({' '.join(f'{k}={v}' for k, v in variables.items())})
  replication status         .venv/bin/boxlink status --root {node}
  node status                .venv/bin/node-bootstrap status --root {node}
  node logs                  {node}/data/log/  (also shipped to s3://{BUCKET}/logs/)
  proxy status, a tile       curl -s {VIEWER}proxy/status ; curl -sI {VIEWER}tiles/{DATASET}/0/0/0.jpg
Ctrl-C (or make demo-stop) stops everything.""")

    def watch(self) -> None:
        """Until interrupted: a proxy or S3 server that dies ends the demo, saying so."""
        while True:
            time.sleep(1.0)
            if self.proxy is not None and self.proxy.poll() is not None:
                raise RuntimeError(f"tile-proxy exited with code {self.proxy.returncode}; see {self.work}/proxy.log")
            if self.server is not None and not self.server.running:
                raise RuntimeError(f"SeaweedFS exited; see {self.server.log_path}")

    def down(self) -> None:
        """Stop what this demo started (proxy, nodes, S3), then give up the work folder."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not cut this short
            signal.signal(sig, lambda *_: console.print("    still stopping…"))
        stopped = []
        if self.session.record is not None:
            self.record.state = "stopping"
            self.session.save(self.record)
        if self.proxy is not None:
            end_group(self.proxy.pid, 10)
            self.proxy.wait()
            stopped.append("the proxy")
        running = [r for r in self.node_roots if (launch := read_launch(NodeLayout(r))) and not launch.stopped
                   and launch.launched >= self.record.started]  # launched by this demo, not yet stopped
        stops = [subprocess.Popen([str(EC2_RENDER), "--local", "--stop", str(root)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for root in running]
        for stop in stops:
            stop.wait(90)
        if stops:
            stopped.append("1 node" if len(stops) == 1 else f"{len(stops)} nodes")
        if self.server is not None:
            self.server.stop()
            stopped.append("SeaweedFS")
        self.session.release()
        if stopped:
            console.print(f"stopped {', '.join(stopped)}")


def interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(work: Path, gigapixels: float, once: bool) -> int:
    session = Session(work)
    if not session.acquire():
        console.print(f"[red]make demo:[/] {session.refusal()}")
        return 1
    demo = Demo(session, gigapixels)
    try:
        demo.up()
        if not once:
            demo.watch()
    except KeyboardInterrupt:
        console.print("\nstopping…")
    except Exception as exc:  # a failed step: said in one line, then everything started is stopped
        console.print(f"[red]demo failed:[/] {exc}")
        return 1
    finally:
        demo.down()
    return 0


def update(work: Path) -> int:
    session = Session(work)
    if session.acquire():
        session.release()
        console.print(f"no demo is running from {work} (start one with: make demo)")
        return 1
    record = Record.read(session.record_path)
    if record is None or record.state != "running":
        console.print("the demo is still starting (or stopping): run make demo-update once it says browsable")
        return 1
    with (work / "update.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            console.print("another make demo-update is running; let it finish first")
            return 1
        os.environ.update(s3_variables(record.s3_endpoint, ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION, record.bucket))
        try:
            seconds = demo_update.update(record, work / "wall", DATASET, work / "published.json", console.print)
        except Exception as exc:
            console.print(f"[red]demo-update failed:[/] {exc}")
            return 1
    console.print(f"[bold green]done in {seconds:.1f} s:[/] the open viewer shows the new covers at its next look "
                  f"(it asks every 5 s), without a reload; {VIEWER}")
    return 0


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # even when the parent left SIGINT ignored
        signal.signal(sig, interrupt)
    parser = argparse.ArgumentParser(prog="scripts/demo.py", description=__doc__.splitlines()[0].replace("``", ""),
                                     formatter_class=commandline.HelpFormatter)
    parser.add_argument("action", nargs="?", default="up", choices=["up", "update", "stop"],
                        help="up: run the demo (default); update: change a few covers; stop: stop the running demo")
    flag(parser, "work", Path, REPO / "demo-work", help="the work folder")
    flag(parser, "gigapixels", float, 46.0, help="size of the covers wall")
    flag(parser, "once", bool, help="stop right after bringing everything up")
    args = parser.parse_args()
    work = args.work.resolve()
    try:
        if args.action == "update":
            return update(work)
        if args.action == "stop":
            console.print(stop_holder(Session(work)))
            return 0
        return serve(work, args.gigapixels, args.once)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
