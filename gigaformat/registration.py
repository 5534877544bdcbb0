"""The registration record ``s3://BUCKET/proxy/<ip>.p<port>``: written by a render node, read by the proxy.

One definition, imported by both sides (docs/architecture.md, "Registration record").
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from gigaformat.clock import parse_iso
from gigaformat.errors import FormatError, MalformedDocument

PREFIX = "proxy/"
DEFAULT_TTL_SECONDS = 30
CACHE_SECONDS = 31_536_000


def record_key(address: str, port: int) -> str:
    return f"{PREFIX}{address}.p{port}"


@dataclass
class Registration:
    address: str
    port: int
    routes: list[str] = field(default_factory=lambda: ["/tiles/*"])
    cache_seconds: int = CACHE_SECONDS
    instance_id: str = ""
    datasets: dict[str, int] = field(default_factory=dict)
    started: str = ""
    heartbeat: str = ""
    ttl_seconds: int = DEFAULT_TTL_SECONDS

    @property
    def key(self) -> str:
        return record_key(self.address, self.port)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Registration:
        """The record in ``data``; MalformedDocument otherwise."""
        try:
            doc = json.loads(data)
            record = cls(
                address=str(ipaddress.ip_address(doc["address"])), port=int(doc["port"]),
                routes=[str(r) for r in doc.get("routes", ["/tiles/*"])],
                cache_seconds=int(doc.get("cache_seconds", CACHE_SECONDS)),
                instance_id=str(doc.get("instance_id", "")),
                datasets={str(k): int(v) for k, v in dict(doc.get("datasets", {})).items()},
                started=str(doc.get("started", "")), heartbeat=str(doc["heartbeat"]),
                ttl_seconds=int(doc.get("ttl_seconds", DEFAULT_TTL_SECONDS)),
            )
            parse_iso(record.heartbeat)
        except FormatError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedDocument(f"registration record is malformed ({exc.__class__.__name__}: {exc})") from None
        if not 0 < record.port < 65536:
            raise MalformedDocument(f"registration record has port {record.port} out of range")
        return record

    def is_fresh(self, now: datetime) -> bool:
        """True while the heartbeat is younger than ``ttl_seconds``."""
        return (now - parse_iso(self.heartbeat)).total_seconds() <= self.ttl_seconds
