"""Self-registration of a render node: once /readyz is green, write s3://BUCKET/proxy/<ip>.p<port>,
renew it every ttl/3 seconds, delete it on a clean stop."""

from __future__ import annotations

import logging
import threading

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from gigaformat.clock import utc_now_iso
from gigaformat.registration import Registration
from gigaformat.s3 import describe, make_client

log = logging.getLogger(__name__)

UNREGISTERED_POLL_SECONDS = 0.05  # how often /readyz is asked until the first record is written (one local GET)

ROUTES = ["/tiles/*", "/iiif/*"]  # what this node serves through tile-proxy


class Heartbeat(threading.Thread):
    def __init__(self, bucket: str, address: str, port: int, check_url: str, instance_id: str = "",
                 ttl_seconds: int = 30, client=None):
        super().__init__(name="heartbeat", daemon=True)
        self.bucket = bucket
        self.check_url = check_url
        self.client = client or make_client(transfer_methods=False, operations=("PutObject", "DeleteObject"))
        now = utc_now_iso()
        self.record = Registration(address=address, port=port, routes=list(ROUTES), instance_id=instance_id,
                                   started=now, heartbeat=now, ttl_seconds=ttl_seconds)
        self.stopping = threading.Event()
        self.registered = False

    def _ready_datasets(self) -> dict[str, int] | None:
        try:
            response = httpx.get(self.check_url, timeout=2.0)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return dict(response.json().get("datasets", {}))

    def beat(self) -> None:
        datasets = self._ready_datasets()
        if datasets is None:
            if self.registered:  # not ready any more: stop advertising rather than serve errors
                self.withdraw()
            return
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
