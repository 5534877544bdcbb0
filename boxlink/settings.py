"""boxlink's one settings object, built once in the CLI from flags and ``GIGATILE_*`` variables."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

MB = 1 << 20
LAZY_BYTES = 64 * MB  # a pass fetching this many pack bytes or more lets the render server start lazily
# A lazy start's fill waits (at most this long) until the render server that wants the dataset serves the
# staged generation: on a node's few cores the fill slowed its workers' load 3-5x (boxlink/apply.py).
LAZY_HOLD_SECONDS = 5.0
# ... and then until it has answered its first tile (synch.answered), at most this long: one poll of the
# proxies' registry (proxy --poll-seconds), by when the node's first viewers have come.
LAZY_FIRST_TILE_SECONDS = 2.0
# ... and then fetches on this many connections at most while the node serves lazily: its tiles' ranged GETs
# wait behind fewer streams (20-Gpx wall on 2 cores, local S3: the first tile 0.3-0.4 s after registering
# instead of 0.8-1.2 with 8, both with about 0.2 s of the bench's own HTTP client in them; fully replicated
# 13.5-17.1 s against 13.7-18.2); the disk is the limit either way.
LAZY_FILL_CONCURRENCY = 2


@dataclass(frozen=True)
class TransferPolicy:
    """How objects come down: ``concurrency`` ranged GETs in flight, ``chunk_bytes`` each.

    An object that fails (network) or does not match its manifest (size, sha256) is fetched again,
    up to ``attempts`` times in all, waiting ``backoff_seconds * 2**n`` (with jitter) in between.
    """

    concurrency: int = 8
    # A pack (<= 128 MB and one chain) is one GET, hashed as it streams in, never read back: a 2.9-GB sync,
    # 3 interleaved rounds, 540 MB/s with 256-MB chunks, 513 with 128, 500 with 64 (2026-12-03)
    chunk_bytes: int = 256 * MB
    attempts: int = 4
    backoff_seconds: float = 0.5
    # Whole blocks past the page cache (O_DIRECT, transfer._PartFile) instead of through it. Off: through the page
    # cache was the faster way here, 2026-12-07, interleaved against s5cmd on a fresh SeaweedFS: 0.29 GB in
    # 1.18-1.42 s (medians of 4-6 rounds) against 1.72 with O_DIRECT, 2.9 GB in 10.1 s against 10.7 (s5cmd
    # 1.28-1.35 s and 11.4 s, each with a `sync` after it).
    direct_writes: bool = False


@dataclass(frozen=True)
class Settings:
    root: Path
    bucket: str
    instance_id: str = field(default_factory=socket.gethostname)
    interval: float = 5.0  # seconds between manifest polls in ``run``
    transfer: TransferPolicy = TransferPolicy()
    log_interval: float = 60.0  # upload the open log file at most this often (seconds)
    retry_max_seconds: float = 60.0  # ceiling of the wait between failed passes in ``run``
    progress: bool = False  # a rich progress bar on stderr
    lazy_bytes: int = LAZY_BYTES
    # Debug hook for crash tests: {"before-switch": 30.0} sleeps there (GIGATILE_DEBUG_PAUSE).
    debug_pauses: dict[str, float] = field(default_factory=dict)
