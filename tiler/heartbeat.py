"""Self-registration of a render node: once /readyz is green, write s3://BUCKET/proxy/<ip>.p<port>,
renew it every ttl/3 seconds, delete it on a clean stop."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import urllib3
from botocore.exceptions import BotoCoreError, ClientError

from gigaformat.clock import utc_now_iso
from gigaformat.layout import SERVING, DatasetDir
from gigaformat.registration import Registration
from gigaformat.s3 import describe, make_client

log = logging.getLogger(__name__)

UNREGISTERED_POLL_SECONDS = 0.05  # how often /readyz is asked until the first record is written (one local GET)
# How long /readyz may take to answer: a worker that has not loaded its data yet loads it before it answers
# (1.8-2.7 s for a 44,651-item generation on a node's busy cores), so the first answer is waited for;
# a registered node's check fails fast, and its record is withdrawn.
READY_TIMEOUT_SECONDS = 2.0
FIRST_READY_TIMEOUT_SECONDS = 30.0

ROUTES = ["/tiles/*", "/iiif/*"]  # what this node serves through tile-proxy


class Heartbeat(threading.Thread):
    def __init__(self, bucket: str, address: str, port: int, check_url: str, instance_id: str = "",
                 ttl_seconds: int = 30, client=None, *, root: Path):
        super().__init__(name="heartbeat", daemon=True)
        self.bucket = bucket
        self.check_url = check_url
        self.root = root  # the node's root: each generation the record names is announced in synch.serving
        self.announced: dict[str, int] = {}
        self.client = client or make_client(transfer_methods=False, operations=("PutObject", "DeleteObject"))
        now = utc_now_iso()
        self.record = Registration(address=address, port=port, routes=list(ROUTES), instance_id=instance_id,
                                   started=now, heartbeat=now, ttl_seconds=ttl_seconds)
        self.stopping = threading.Event()
        self.registered = False

    def _readiness(self) -> dict | None:
        """What /readyz says when it is 200 ({"datasets": {name: generation}, "lazy": [...]}), else None."""
        try:  # urllib3, which botocore brings: httpx's import was 0.15 s more beside a node's starting workers
            response = urllib3.request("GET", self.check_url, retries=False, timeout=READY_TIMEOUT_SECONDS
                                       if self.registered else FIRST_READY_TIMEOUT_SECONDS)
            return response.json() if response.status == 200 else None
        except (urllib3.exceptions.HTTPError, ValueError):  # no answer, or not the readiness document
            return None

    def beat(self) -> None:
        readiness = self._readiness()
        if readiness is None:
            if self.registered:  # not ready any more: stop advertising rather than serve errors
                self.withdraw()
            return
        datasets = dict(readiness.get("datasets", {}))
        self.record.datasets = datasets
        self.record.heartbeat = utc_now_iso()
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.record.key, Body=self.record.to_bytes(),
                                   ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            log.warning("heartbeat failed key=%s error=%s", self.record.key, describe(exc))
            return
        if not self.registered:
            log.info("registered key=s3://%s/%s datasets=%s", self.bucket, self.record.key, datasets)
        self.registered = True
        self._announce(datasets, set(readiness.get("lazy", [])))

    def _announce(self, datasets: dict[str, int], lazy: set[str]) -> None:
        """The node serves what its record names: say so in each dataset's ``synch.serving`` (boxlink holds a
        lazy start's fill until then; on a registry node the workers do not write it themselves)."""
        for name, generation in datasets.items():
            if self.announced.get(name) == generation:
                continue
            try:
                DatasetDir(self.root, name).mark_serving(int(generation), name in lazy)
                self.announced[name] = generation
                log.info("announced dataset=%s generation=%s lazy=%s", name, generation, name in lazy)
            except (OSError, ValueError) as exc:
                log.warning("cannot write %s dataset=%s error=%s", SERVING, name, exc)

    def withdraw(self) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.record.key)
            log.info("deregistered key=s3://%s/%s", self.bucket, self.record.key)
        except (ClientError, BotoCoreError) as exc:
            log.warning("deregistration failed key=%s error=%s", self.record.key, describe(exc))
        self.registered = False

    def run(self) -> None:
        while not self.stopping.is_set():
            self.beat()
            # Until registered, look often (the record is the node's announcement: written as soon as it is
            # ready); afterwards renew at a third of the TTL.
            self.stopping.wait(self.record.ttl_seconds / 3 if self.registered else UNREGISTERED_POLL_SECONDS)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        if self.registered:
            self.withdraw()
