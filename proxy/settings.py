"""Settings of ``tile-proxy run``: one object, built once by the CLI and passed down."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from proxy.errors import ProxyError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Loopback and the private ranges: where render nodes live (a VPC, or 127.0.0.N on one machine).
DEFAULT_ALLOW_NET = "127.0.0.0/8,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,::1/128,fc00::/7"
VIEWER_DIR = Path(__file__).resolve().parent.parent / "tiler" / "viewer"  # the viewer ships with tiler

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from ``"2G"``, ``"512M"``, ``"64k"`` or a plain number (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise ProxyError(f"size {text!r}: use a number with an optional K, M, G or T suffix, e.g. 2G")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_networks(text: str) -> tuple[Network, ...]:
    """CIDRs from a comma-separated list, e.g. ``"10.0.0.0/8,127.0.0.0/8"``."""
    nets = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ProxyError(f"--allow-net {part!r} is not a network ({exc})") from None
    if not nets:
        raise ProxyError("--allow-net names no network; the proxy would never forward anything")
    return tuple(nets)


@dataclass(frozen=True)
class ProxySettings:
    bucket: str
    cache_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    allow_nets: tuple[Network, ...] = parse_networks(DEFAULT_ALLOW_NET)
    poll_seconds: float = 2.0          # how often s3://BUCKET/proxy/ is listed
    health_seconds: float = 2.0        # how often each backend's /readyz is checked
    cache_bytes: int = 2 << 30         # on-disk cache bound (file sizes)
    memory_bytes: int = 64 << 20       # in-memory LRU of hot tiles, in front of the disk cache
    connect_timeout: float = 1.0
    read_timeout: float = 15.0
    max_attempts: int = 3              # backends tried for one request before answering 502
    viewer_dir: Path = VIEWER_DIR
    sweep_ttls: float = 10.0           # a record unrenewed for this many of its TTLs is deleted (0: never)
    sd_file: Path | None = None        # Prometheus file-based service discovery targets, rewritten on change
    fleet_seconds: float = 5.0         # sampling interval of the fleet page's history

    def allows(self, address: str) -> bool:
        """True when ``address`` (an IP literal) lies inside one of the allowed networks."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self.allow_nets)
