"""The node's user-data: a small, versioned JSON document with no secrets (bootstrap/README.md).

Either the whole user-data is the JSON object, or the user-data is a ``#!`` script or a ``#cloud-config``
document with exactly one line ``# gigatile-node: {...}`` carrying it (a comment to the shell and to YAML).
Credentials never travel here: anything on the instance and in the EC2 console can read user-data.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from bootstrap.errors import BootstrapError
from gigaformat.forwarding import parse_networks, public_base_url

FORMAT_VERSION = 1
MARKER = "# gigatile-node: "
MAX_BYTES = 16384  # EC2's limit for raw user-data
DEFAULT_ROOT = "/srv/gigatile"
DEFAULT_COMMAND = "nohup /opt/gigatile/bin/node-bootstrap run >>/var/log/node-bootstrap.log 2>&1 &"
STYLES = ("json", "cloud-config", "script")

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # datasets (as tiler.manifest) and release channels
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_SECRET = re.compile(r"secret|password|passwd|token|credential|access_key|private_key", re.IGNORECASE)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class NodeConfig:
    """What a node is told at launch. Field names are the document's keys."""

    bucket: str
    datasets: tuple[str, ...] = ("covers",)
    port: int = 8080
    channel: str = "current"       # releases/<channel>.json names the release to run
    root: str = DEFAULT_ROOT
    workers: int = 2               # tiler serve worker processes
    ttl_seconds: int = 30          # registration record TTL; the heartbeat renews it every ttl/3
    sync_interval: float = 5.0     # boxlink's manifest poll interval, seconds
    bind: str = ""                 # address tiler serve binds; "" = the instance's private IPv4
    s3_endpoint_url: str = ""      # only for S3-compatible stores; "" = AWS's own endpoint chain
    region: str = ""               # "" = the instance's region from IMDS
    self_update: bool = True       # fetch s3://bucket/bootstrap/current.json and re-execute a newer bootstrap
    warmup: bool = True            # compile a new release's render kernels beside the first sync
    log_level: str = "INFO"
    trusted_proxies: str = ""      # networks whose X-Forwarded-*/Forwarded tiler serve believes; "" = loopback
    public_url: str = ""           # base URL of IIIF ids (e.g. the CDN's https://...); "" = from the request

    def __post_init__(self) -> None:
        _validate(self)

    def to_document(self) -> dict[str, Any]:
        """The JSON document (empty optional strings left out)."""
        doc: dict[str, Any] = {"gigatile": FORMAT_VERSION}
        for key, value in asdict(self).items():
            if value == "" and key in OPTIONAL_STRINGS:
                continue
            doc[key] = list(value) if isinstance(value, tuple) else value
        return doc


KNOWN_KEYS = tuple(f.name for f in fields(NodeConfig))
OPTIONAL_STRINGS = ("bind", "s3_endpoint_url", "region", "trusted_proxies", "public_url")  # left out when ""


def _fail(key: str, value: Any, want: str) -> BootstrapError:
    return BootstrapError(f"user-data: {key}={value!r} is not valid: {want}")


def _validate(c: NodeConfig) -> None:
    if not isinstance(c.bucket, str) or not _BUCKET.match(c.bucket):
        raise _fail("bucket", c.bucket, "an S3 bucket name, 3-63 of a-z 0-9 . -")
    if not c.datasets or not all(isinstance(d, str) and _NAME.match(d) for d in c.datasets) \
            or len(set(c.datasets)) != len(c.datasets):
        raise _fail("datasets", list(c.datasets), "a non-empty list of distinct names of 1-63 a-z 0-9 _ -")
    for key, low, high in (("port", 1, 65535), ("workers", 1, 64), ("ttl_seconds", 3, 86400)):
        value = getattr(c, key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(key, value, f"a whole number {low}-{high}")
    if isinstance(c.sync_interval, bool) or not isinstance(c.sync_interval, int | float) \
            or not 0 < c.sync_interval <= 3600:
        raise _fail("sync_interval", c.sync_interval, "seconds, more than 0 and at most 3600")
    if not isinstance(c.channel, str) or not _NAME.match(c.channel):
        raise _fail("channel", c.channel, "1-63 of a-z 0-9 _ -")
    if not isinstance(c.root, str) or not c.root.startswith("/"):
        raise _fail("root", c.root, "an absolute path")
    if c.bind:
        try:
            ipaddress.ip_address(c.bind)
        except ValueError:
            raise _fail("bind", c.bind, "an IP address, or leave it out for the private IPv4") from None
    if c.s3_endpoint_url and not re.match(r"^https?://[^\s/]+/?$", str(c.s3_endpoint_url)):
        raise _fail("s3_endpoint_url", c.s3_endpoint_url, "http(s)://host[:port]")
    if c.region and not _REGION.match(str(c.region)):
        raise _fail("region", c.region, "an AWS region such as eu-west-1")
    for key in ("self_update", "warmup"):
        if not isinstance(getattr(c, key), bool):
            raise _fail(key, getattr(c, key), "true or false")
    for key, check in (("trusted_proxies", parse_networks), ("public_url", public_base_url)):
        value = getattr(c, key)
        try:
            if not isinstance(value, str):
                raise ValueError("not a string")
            check(value)
        except ValueError as exc:
            raise _fail(key, value, f"{exc}") from None
    if c.log_level not in _LOG_LEVELS:
        raise _fail("log_level", c.log_level, " ".join(_LOG_LEVELS))


class NewerDocument(BootstrapError):
    """User-data this node-bootstrap cannot read whole (a newer format version, or keys it does not know,
    as a newer bootstrap writes them), though the keys it knows are valid: ``known`` is the config of those
    alone, enough to look for a fresher bootstrap (``bootstrap/current.json``) that reads the rest."""

    def __init__(self, problem: str, known: NodeConfig):
        super().__init__(problem)
        self.known = known


def config_from_document(doc: Any) -> NodeConfig:
    """A NodeConfig from a parsed document; BootstrapError names the first problem (``NewerDocument`` for one
    that a fresher bootstrap may read)."""
    if not isinstance(doc, dict):
        raise BootstrapError(f"user-data: expected a JSON object, got {type(doc).__name__}")
    version = doc.get("gigatile")
    if version is None:
        raise BootstrapError('user-data: not a gigatile document (no "gigatile": 1 in it)')
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail("gigatile", version, f"the format version, {FORMAT_VERSION}")
    secrets = sorted(k for k in doc if _SECRET.search(str(k)))
    if secrets:
        raise BootstrapError(f"user-data must not carry secrets (found {', '.join(secrets)}): anything on the "
                             "instance and in the EC2 console can read it; credentials come from the instance "
                             "role through the AWS credential chain")
    unknown = sorted(str(k) for k in set(doc) - set(KNOWN_KEYS) - {"gigatile"})
    if version > FORMAT_VERSION:
        problem = (f"user-data: format version {version} is newer than this node-bootstrap reads "
                   f"({FORMAT_VERSION})")
    elif unknown:
        problem = f"user-data: unknown key(s) {', '.join(unknown)}; known: {', '.join(KNOWN_KEYS)}"
    else:
        return _config(doc)
    try:  # what it does know may still say where a fresher bootstrap is, which may read the rest
        known = _config({k: v for k, v in doc.items() if k in KNOWN_KEYS})
    except BootstrapError:
        raise BootstrapError(problem) from None
    raise NewerDocument(problem, known)


def _config(doc: dict) -> NodeConfig:
    if "bucket" not in doc:
        raise BootstrapError("user-data: bucket is required")
    values = {k: v for k, v in doc.items() if k != "gigatile"}
    if "datasets" in values:
        if not isinstance(values["datasets"], list):
            raise _fail("datasets", values["datasets"], "a JSON list of dataset names")
        values["datasets"] = tuple(values["datasets"])
    return NodeConfig(**values)


def parse_user_data(raw: bytes | str) -> NodeConfig:
    """Parse user-data (a JSON object, or a script / cloud-config with one ``# gigatile-node:`` line)."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_BYTES:
            raise BootstrapError(f"user-data is {len(raw)} bytes; EC2 allows {MAX_BYTES}")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BootstrapError(f"user-data is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    text = raw.strip()
    if not text:
        raise BootstrapError("user-data is empty: launch the node with a gigatile document (bootstrap/README.md)")
    if text.startswith("{"):
        body, where = text, "user-data"
    else:
        lines = [line for line in text.splitlines() if line.startswith(MARKER)]
        if len(lines) != 1:
            first = text.splitlines()[0][:40]
            found = "no" if not lines else f"{len(lines)}"
            raise BootstrapError(f"user-data (starting {first!r}) has {found} '{MARKER.strip()} {{...}}' line(s); "
                                 "expected a JSON object or exactly one such line")
        body, where = lines[0][len(MARKER):], "the gigatile-node line"
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as exc:
        raise BootstrapError(f"user-data: {where} is not valid JSON ({exc.msg} at line {exc.lineno} "
                             f"column {exc.colno})") from None
    return config_from_document(doc)


def render_user_data(config: NodeConfig, style: str = "json", command: str = DEFAULT_COMMAND) -> str:
    """The user-data text for ``config``: ``json`` (for images whose rc.local runs node-bootstrap),
    ``cloud-config`` (runcmd starts it on first boot) or ``script`` (a ``#!/bin/sh`` user-data script)."""
    line = json.dumps(config.to_document(), separators=(",", ":"))
    if style == "json":
        text = json.dumps(config.to_document(), indent=1) + "\n"
    elif style == "cloud-config":
        text = f"#cloud-config\n{MARKER}{line}\nruncmd:\n  - [sh, -c, {json.dumps(command)}]\n"
    elif style == "script":
        text = f"#!/bin/sh\n{MARKER}{line}\n{command}\n"
    else:
        raise BootstrapError(f"user-data style {style!r}: use one of {', '.join(STYLES)}")
    if len(text.encode()) > MAX_BYTES:
        raise BootstrapError(f"user-data would be {len(text.encode())} bytes; EC2 allows {MAX_BYTES}")
    return text
