"""A render node on this machine: its own root, its own 127.0.0.N, its own IMDSv2 emulator, and the same
``node-bootstrap run`` an EC2 instance runs, detached. ``<root>/local/launch.json`` records the PIDs."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bootstrap.errors import BootstrapError, ImdsError
from bootstrap.node.imds import ENDPOINT_VARIABLE, ImdsClient
from bootstrap.node.status import STARTED_VARIABLE, pid_alive, read_status, runs_command
from bootstrap.node.userdata import NodeConfig, render_user_data
from gigaformat.durable import write_atomic
from gigaformat.layout import NodeLayout

RECORD = "launch.json"
IMDS_MODULE = "bootstrap.launch.imds_emulator"
LIFECYCLE = "target-lifecycle-state"  # what the IMDS emulator serves as autoscaling/target-lifecycle-state
LAUNCHER_VARIABLE = "GIGATILE_LAUNCHER"  # scripts/ec2_render.sh names itself here


@dataclass(frozen=True)
class LocalNode:
    root: str
    address: str
    port: int
    instance_id: str
    imds_url: str
    imds_pid: int
    node_pid: int
    node_log: str
    imds_log: str
    launched: float  # epoch, before anything was started
    status_command: str = ""  # shell commands that run as printed, from any folder
    stop_command: str = ""
    stopped: float = 0.0  # epoch of a clean --stop; 0 while it runs

    def describe(self) -> str:
        return (f"node {self.instance_id} at {self.address}:{self.port} root={self.root}\n"
                f"  node-bootstrap pid={self.node_pid} log={self.node_log}\n"
                f"  imds {self.imds_url} pid={self.imds_pid} log={self.imds_log}\n"
                f"  status: {self.status_command}\n"
                f"  stop:   {self.stop_command}")


def _python_module(python: str, module: str) -> str:
    checkout = Path(__file__).resolve().parents[2]
    return f"PYTHONPATH={shlex.quote(str(checkout))} {shlex.quote(python)} -m {module}"


def status_command(root: Path, python: str) -> str:
    """``node-bootstrap status --root ROOT`` as a shell line that runs from any folder: the console script
    beside ``python`` (a venv) when it is there, else ``python -m bootstrap.cli`` with this checkout."""
    beside = Path(python).parent / "node-bootstrap"
    head = shlex.quote(str(beside)) if os.access(beside, os.X_OK) else _python_module(python, "bootstrap.cli")
    return f"{head} status --root {shlex.quote(str(root))}"


def stop_command(root: Path, python: str) -> str:
    """The shell line that stops the local node in ``root``: ``scripts/ec2_render.sh`` when called through it."""
    script = os.environ.get(LAUNCHER_VARIABLE, "")
    head = shlex.quote(script) if script and Path(script).is_file() else _python_module(python, "bootstrap.launch")
    return f"{head} --local --stop {shlex.quote(str(root))}"


def _can_bind(address: str, port: int) -> bool:
    """True if a server could listen on address:port now (as servers do, past the TIME_WAIT connections a
    server stopped a moment ago leaves; never beside a live listener)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def pick_address(port: int, first: int = 2, last: int = 254) -> str:
    """The first 127.0.0.N (N >= 2) where ``port`` is free."""
    for n in range(first, last + 1):
        address = f"127.0.0.{n}"
        if _can_bind(address, port):
            return address
    raise BootstrapError(f"no 127.0.0.N address with port {port} free (N {first}-{last}); pass --address")


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _instance_id(address: str) -> str:
    return "i-" + "".join(f"{int(part):02x}" for part in address.split(".")) + secrets.token_hex(5)[:9]


def _wait_for_imds(url: str, popen: subprocess.Popen, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise BootstrapError(f"the IMDS emulator exited with code {popen.returncode}:\n"
                                 f"{log.read_text(errors='replace')[-1500:]}")
        with contextlib.suppress(ImdsError), ImdsClient(url, token_ttl=10, timeout=0.5, attempts=1) as imds:
            imds.token()
            return
        time.sleep(0.02)
    raise BootstrapError(f"the IMDS emulator did not answer at {url} within {timeout:.0f} s; see {log}")


def launch_local(config: NodeConfig, address: str | None = None, imds_port: int | None = None,
                 environ: dict[str, str] | None = None, python: str = sys.executable) -> LocalNode:
    """Start a detached local node for ``config`` (its ``root`` is the node's root) and return its record."""
    launched = time.time()
    environ = dict(os.environ if environ is None else environ)
    layout = NodeLayout(Path(config.root))
    old = read_launch(layout)
    if old is not None and pid_alive(old.node_pid):
        raise BootstrapError(f"a local node already runs in {layout.root} (pid {old.node_pid}); stop it first")
    address = address or pick_address(config.port)
    if not _can_bind(address, config.port):
        raise BootstrapError(f"{address}:{config.port} is in use: pick another --address or --port")
    layout.local_dir.mkdir(parents=True, exist_ok=True)
    user_data = layout.local_dir / "user-data"
    user_data.write_text(render_user_data(config))
    instance_id = _instance_id(address)
    imds_port = imds_port or _free_port(address)
    imds_log, node_log = layout.local_dir / "imds.log", layout.local_dir / "node-bootstrap.out"
    with imds_log.open("ab") as out:
        imds = subprocess.Popen([python, "-m", IMDS_MODULE, "--host", address,
                                 "--port", str(imds_port), "--user-data", str(user_data), "--instance-id", instance_id,
                                 "--local-ipv4", address, "--lifecycle-file", str(layout.local_dir / LIFECYCLE)],
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=layout.local_dir)
    imds_url = f"http://{address}:{imds_port}"
    try:
        _wait_for_imds(imds_url, imds, imds_log)
    except BaseException:
        _end(imds.pid, 2.0)
        raise
    env = {**environ, ENDPOINT_VARIABLE: imds_url, STARTED_VARIABLE: repr(launched)}
    with node_log.open("ab") as out:
        node = subprocess.Popen([python, "-m", "bootstrap.cli", "run", "--root", str(layout.root)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=layout.root, env=env)
    record = LocalNode(root=str(layout.root), address=address, port=config.port, instance_id=instance_id,
                       imds_url=imds_url, imds_pid=imds.pid, node_pid=node.pid, node_log=str(node_log),
                       imds_log=str(imds_log), launched=launched,
                       status_command=status_command(layout.root, python),
                       stop_command=stop_command(layout.root, python))
    _write_launch(layout, record)
    return record


def _write_launch(layout: NodeLayout, record: LocalNode) -> None:
    write_atomic(layout.local_dir / RECORD, json.dumps(asdict(record), indent=1).encode())


def read_launch(layout: NodeLayout) -> LocalNode | None:
    try:
        return LocalNode(**json.loads((layout.local_dir / RECORD).read_bytes()))
    except (OSError, ValueError, TypeError):
        return None


def _end(pid: int, grace: float) -> bool:
    """SIGTERM ``pid``, wait up to ``grace`` s, then SIGKILL its process group; True if it stopped in time."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    clean = not pid_alive(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return clean


def stop_local(root: Path, grace: float = 30.0) -> tuple[LocalNode, bool]:
    """Stop the local node in ``root``: node-bootstrap (which stops its children), then its IMDS emulator.

    Returns the launch record and whether anything was left to stop (False: a stop before this one did it).
    """
    layout = NodeLayout(root.resolve())
    record = read_launch(layout)
    if record is None:
        raise BootstrapError(f"no local node was launched in {root} (no {layout.local_dir / RECORD})")
    running = runs_command(record.node_pid, "bootstrap") or runs_command(record.imds_pid, IMDS_MODULE)
    if record.stopped and not running:
        return record, False
    if runs_command(record.node_pid, "bootstrap") and not _end(record.node_pid, grace):
        print(f"warning: node-bootstrap pid {record.node_pid} did not stop in {grace:.0f} s; killed",
              file=sys.stderr)
    _end_orphans(layout)
    if runs_command(record.imds_pid, IMDS_MODULE):
        _end(record.imds_pid, 5.0)
    record = replace(record, stopped=time.time())
    _write_launch(layout, record)
    return record, True


def scale_in_local(root: Path, grace: float = 60.0) -> LocalNode:
    """What an Auto Scaling scale-in does to the node in ``root``: its target lifecycle state becomes
    ``Terminated``; node-bootstrap sees it, stops its children (the render server deregisters) and exits;
    then its IMDS emulator is stopped (the instance is gone)."""
    layout = NodeLayout(root.resolve())
    record = read_launch(layout)
    if record is None:
        raise BootstrapError(f"no local node was launched in {root} (no {layout.local_dir / RECORD})")
    write_atomic(layout.local_dir / LIFECYCLE, b"Terminated\n")
    deadline = time.monotonic() + grace
    while pid_alive(record.node_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(record.node_pid):
        print(f"warning: node-bootstrap pid {record.node_pid} did not leave in {grace:.0f} s; stopping it",
              file=sys.stderr)
    return stop_local(root)[0]


def _end_orphans(layout: NodeLayout) -> None:
    """Kill the process groups of children a killed node-bootstrap left running (pids from its status)."""
    doc = read_status(layout.status_path) or {}
    for child in doc.get("children", []):
        pid = child.get("pid")
        if pid and pid_alive(pid) and runs_command(pid, str(layout.root)):
            _end(pid, 5.0)
