"""An IMDSv2 emulator for one node: the instance metadata paths node-bootstrap (and botocore) use.

A product feature for local clusters: each local node gets its own, on its own 127.0.0.N address, and
``AWS_EC2_METADATA_SERVICE_ENDPOINT`` points the node at it. Behaves as an instance launched with
``HttpTokens=required``: ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1-21600)
returns a token; every GET needs a live ``X-aws-ec2-metadata-token`` (else 401); a token PUT carrying
``X-Forwarded-For`` is refused (403), as the real service does to keep tokens off proxies.

    python -m bootstrap.launch.imds_emulator --host 127.0.0.2 --port 8111 --user-data node.json \\
        --instance-id i-0local2 --local-ipv4 127.0.0.2
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bootstrap.errors import BootstrapError
from gigaformat import commandline

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TTL_SECONDS = 21600


@dataclass(frozen=True)
class InstanceMetadata:
    """What one emulated instance reports about itself."""

    instance_id: str
    local_ipv4: str
    user_data: bytes | None = None
    region: str = "us-east-1"
    availability_zone: str = "us-east-1a"
    instance_type: str = "local"
    image_id: str = "ami-local"
    hostname: str = ""
    lifecycle_file: Path | None = None  # its text is autoscaling/target-lifecycle-state (InService if absent)

    @property
    def host_name(self) -> str:
        return self.hostname or f"ip-{self.local_ipv4.replace('.', '-')}.local"

    def meta_data(self) -> dict[str, str]:
        """Every leaf under /latest/meta-data/, by path."""
        meta = {"instance-id": self.instance_id, "local-ipv4": self.local_ipv4, "instance-type": self.instance_type,
                "ami-id": self.image_id, "hostname": self.host_name, "local-hostname": self.host_name,
                "placement/availability-zone": self.availability_zone, "placement/region": self.region}
        if self.lifecycle_file is not None:
            try:
                state = self.lifecycle_file.read_text().strip()
            except OSError:
                state = ""
            meta["autoscaling/target-lifecycle-state"] = state or "InService"
        return meta

    def identity_document(self) -> str:
        return json.dumps({"instanceId": self.instance_id, "privateIp": self.local_ipv4, "region": self.region,
                           "availabilityZone": self.availability_zone, "instanceType": self.instance_type,
                           "imageId": self.image_id, "version": "2017-09-30"}, indent=2)


class TokenBook:
    """Issued session tokens and their expiry (monotonic seconds); counts what happened, for tests."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.issued = 0
        self.refused = 0  # requests answered 401

    def issue(self, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}
            self._tokens[token] = now + ttl_seconds
            self.issued += 1
        return token

    def valid(self, token: str | None) -> bool:
        with self._lock:
            ok = token is not None and self._tokens.get(token, 0.0) > self.clock()
            if not ok:
                self.refused += 1
            return ok

    def revoke_all(self) -> None:
        """Forget every token (as after a metadata service restart): clients must get new ones."""
        with self._lock:
            self._tokens.clear()


class ImdsHandler(BaseHTTPRequestHandler):
    server_version = "EC2ws"
    protocol_version = "HTTP/1.1"

    @property
    def metadata(self) -> InstanceMetadata:
        return self.server.metadata  # type: ignore[attr-defined]

    @property
    def tokens(self) -> TokenBook:
        return self.server.tokens  # type: ignore[attr-defined]

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("imds %s", format % args)

    def _reply(self, status: int, body: str | bytes = b"", headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.rstrip("/") != "/latest/api/token":
            return self._reply(405, "Method Not Allowed")
        if self.headers.get("X-Forwarded-For"):
            return self._reply(403, "Forbidden")
        try:
            ttl = int(self.headers.get(TTL_HEADER, ""))
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= MAX_TTL_SECONDS:
            return self._reply(400, f"Bad Request: {TTL_HEADER} must be 1-{MAX_TTL_SECONDS}")
        self._reply(200, self.tokens.issue(ttl), {TTL_HEADER: str(ttl)})

    def do_GET(self) -> None:  # noqa: N802
        if not self.tokens.valid(self.headers.get(TOKEN_HEADER)):
            return self._reply(401, "Unauthorized")
        path = self.path.split("?", 1)[0]
        meta = self.metadata.meta_data()
        if path == "/latest/user-data":
            if self.metadata.user_data is None:
                return self._reply(404, "Not Found")
            return self._reply(200, self.metadata.user_data, {"Content-Type": "application/octet-stream"})
        if path == "/latest/dynamic/instance-identity/document":
            return self._reply(200, self.metadata.identity_document())
        if path.startswith("/latest/meta-data"):
            key = path[len("/latest/meta-data"):].strip("/")
            if key in meta:
                return self._reply(200, meta[key])
            prefix = f"{key}/" if key else ""
            children = sorted({k[len(prefix):].split("/")[0] + ("/" if "/" in k[len(prefix):] else "")
                               for k in meta if k.startswith(prefix)})
            if children:
                return self._reply(200, "\n".join(children))
        self._reply(404, "Not Found")

    def do_POST(self) -> None:  # noqa: N802
        self._reply(405, "Method Not Allowed")

    do_DELETE = do_POST


class ImdsServer:
    """One emulated metadata service on ``host:port`` (port 0: any free one)."""

    def __init__(self, metadata: InstanceMetadata, host: str = "127.0.0.1", port: int = 0):
        self.metadata = metadata
        self.tokens = TokenBook()
        self.httpd = ThreadingHTTPServer((host, port), ImdsHandler)
        self.httpd.daemon_threads = True
        self.httpd.metadata = metadata  # type: ignore[attr-defined]
        self.httpd.tokens = self.tokens  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ImdsServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="imds", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ImdsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def build_parser(prog: str = "python -m bootstrap.launch.imds_emulator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="IMDSv2 emulator for one local node",
                                     formatter_class=commandline.HelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--user-data", type=Path, default=None, help="file served at /latest/user-data")
    parser.add_argument("--instance-id", required=True)
    parser.add_argument("--local-ipv4", default=None, help="default: --host")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--availability-zone", default=None, help="default: <region>a")
    parser.add_argument("--instance-type", default="local")
    parser.add_argument("--hostname", default="")
    parser.add_argument("--lifecycle-file", type=Path, default=None,
                        help="its text is served as autoscaling/target-lifecycle-state (an Auto Scaling member)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m bootstrap.launch.imds_emulator") -> int:
    args = build_parser(prog).parse_args(argv)
    commandline.setup_logging("INFO")
    return commandline.run_command(prog, lambda: serve(args))


def serve(args: argparse.Namespace) -> int:
    """Answer as the instance metadata service until SIGTERM or SIGINT."""
    try:
        user_data = args.user_data.read_bytes() if args.user_data else None
    except OSError as exc:
        raise BootstrapError(f"cannot read --user-data {args.user_data}: {exc.strerror}") from None
    metadata = InstanceMetadata(instance_id=args.instance_id, local_ipv4=args.local_ipv4 or args.host,
                                user_data=user_data, region=args.region,
                                availability_zone=args.availability_zone or f"{args.region}a",
                                instance_type=args.instance_type, hostname=args.hostname,
                                lifecycle_file=args.lifecycle_file)
    try:
        server = ImdsServer(metadata, args.host, args.port)
    except OSError as exc:
        raise BootstrapError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    server.start()
    log.info("imds listening url=%s instance_id=%s local_ipv4=%s", server.url, metadata.instance_id,
             metadata.local_ipv4)
    print(f"IMDS {server.url}", flush=True)
    while not stopping.wait(0.1):
        pass
    server.stop()
    log.info("imds stopped url=%s", server.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
