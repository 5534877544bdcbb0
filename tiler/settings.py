"""Settings of ``tiler serve``: one object, built once by the CLI and handed to every worker."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gigaformat.forwarding import LOOPBACK

ENV_KEY = "GIGATILE_SERVE_SETTINGS"  # how the CLI hands settings to worker processes


@dataclass(frozen=True)
class ServeSettings:
    root: Path
    datasets: tuple[str, ...] = ("covers",)
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    render_threads: int = 2
    max_queue: int = 64               # renders waiting beyond this get 503 + Retry-After
    jpeg_quality: int = 85
    cache_mb: int = 64                # encoded-tile cache per worker
    reload_seconds: float = 1.0       # how often to look for a newer verified generation
    bucket: str = ""                  # registration: s3://bucket/proxy/<ip>.p<port> when set
    advertise: str = ""               # the address written in the record (default: host)
    instance_id: str = ""
    ttl_seconds: int = 30
    viewer: bool = True
    iiif_threads: int = 1             # IIIF renders at once per worker (their own pool, below tiles in priority)
    iiif_max_queue: int = 16          # IIIF requests waiting per worker beyond this get 503 + Retry-After
    iiif_cache_mb: int = 32           # encoded IIIF answers cached per worker
    coarse_raster_mb: int = 512       # decoded coarse levels kept on the node's disk per dataset (0: none)
    public_url: str = ""              # base URL of the ids in IIIF documents (default: from the request)
    trusted_proxies: str = LOOPBACK   # addresses whose Forwarded / X-Forwarded-* headers are believed
    extra: dict = field(default_factory=dict)

    def to_env(self) -> str:
        doc = asdict(self)
        doc["root"] = str(self.root)
        return json.dumps(doc)

    @classmethod
    def from_env(cls) -> ServeSettings:
        doc = json.loads(os.environ[ENV_KEY])
        doc["root"] = Path(doc["root"])
        doc["datasets"] = tuple(doc["datasets"])
        return cls(**doc)
