"""Prometheus file-based service discovery (``file_sd_configs``) from the registry: the render nodes to scrape.

Every registered node whose heartbeat is fresh is a target, healthy or not (an unhealthy node is exactly the
one to look at); a node leaves the file when its record is deleted (clean stop, sweep) or its heartbeat
lapses (a SIGKILLed node: within its TTL). The file is rewritten atomically, and only when its content
changes, so Prometheus (which watches it) sees every change within one registry poll.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from gigaformat.durable import write_atomic
from proxy.registry import Backend

log = logging.getLogger(__name__)


def targets(backends: list[Backend]) -> list[dict]:
    """The ``file_sd`` document: one target group per fresh node, labelled with what its record says."""
    groups = []
    for backend in sorted(backends, key=lambda b: b.id):
        if not backend.fresh:
            continue
        record = backend.record
        groups.append({"targets": [backend.id],
                       "labels": {"gigatile_instance_id": record.instance_id or backend.id,
                                  "gigatile_datasets": ",".join(sorted(record.datasets)),
                                  "gigatile_record": backend.key}})
    return groups


class TargetsFile:
    """The file at ``path``, rewritten when the targets change."""

    def __init__(self, path: Path):
        self.path = path
        self.written: bytes | None = None

    def update(self, backends: list[Backend]) -> bool:
        """Write the targets if they changed; True when the file was written."""
        body = (json.dumps(targets(backends), indent=1) + "\n").encode()
        if body == self.written:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, body)
        except OSError as exc:
            log.warning("service discovery write failed path=%s error=%s", self.path, exc.strerror or exc)
            return False
        if self.written is not None or body.strip() != b"[]":
            log.info("service discovery targets=%d path=%s", body.count(b'"targets"'), self.path)
        self.written = body
        return True
