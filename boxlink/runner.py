"""What ``boxlink run`` and ``boxlink sync`` do on one node: passes over datasets, the poll loop, logs up.

A *pass* over a dataset reads its manifest (a conditional GET: 304 when unchanged), and if the node
is not at that generation, brings it there (``apply.Replica``). Every pass records what it saw and
did, or its error, in the dataset's status file.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from boxlink.apply import Replica, SyncResult, dataset_lock, timed_pause
from boxlink.errors import BoxlinkError, Cancelled
from boxlink.logship import LogShipper
from boxlink.progress import Meter
from boxlink.remote import ManifestPoller, RequestCounter
from boxlink.settings import Settings
from boxlink.status import read_status, update_status
from gigaformat.clock import utc_now_iso
from gigaformat.layout import DatasetDir, NodeLayout
from gigaformat.manifest import manifest_key

log = logging.getLogger(__name__)

LOGSHIP_STATE = ".boxlink/logship.json"  # under <root>/data/ (hidden: not a dataset, not a log)


class Node:
    """boxlink's work on the node at ``settings.root``, with one shared S3 client."""

    def __init__(self, settings: Settings, client, counter: RequestCounter, stop: threading.Event | None = None,
                 meter: Callable[[str], Meter] = Meter):
        self.settings = settings
        self.client = client
        self.counter = counter
        self.stop = stop or threading.Event()
        self.meter = meter
        self.poller = ManifestPoller(client, settings.bucket)
        layout = NodeLayout(settings.root)
        self.shipper = LogShipper(client, settings.bucket, settings.instance_id, layout.log_dir,
                                  layout.data_dir / LOGSHIP_STATE, settings.log_interval)
        self._ship_failures = 0
        self._ship_due = 0.0

    # -- one pass --------------------------------------------------------------------------------
    def sync_dataset(self, dataset: str) -> SyncResult:
        """Bring ``dataset`` to the published generation; raise BoxlinkError (also recorded) if it fails."""
        folder = DatasetDir(self.settings.root, dataset)
        try:
            return self._pass(folder)
        except BoxlinkError as exc:
            if not isinstance(exc, Cancelled):
                failures = int(read_status(folder).get("failures", 0)) + 1
                try:
                    update_status(folder, last_error=str(exc), last_error_at=utc_now_iso(), failures=failures,
                                  requests=self.counter.snapshot())
                except OSError as recording:  # a full disk: the pass's own error is the one to report
                    log.warning("status not recorded dataset=%s error=%s", dataset, recording)
            raise

    def _pass(self, folder: DatasetDir) -> SyncResult:
        poll = self.poller.poll(folder.dataset)
        status = read_status(folder)
        update_status(folder, last_check=utc_now_iso(), checks=int(status.get("checks", 0)) + 1,
                      not_modified=int(status.get("not_modified", 0)) + (not poll.changed),
                      remote_generation=poll.manifest.generation if poll.manifest else None)
        if poll.manifest is None:
            raise BoxlinkError(f"{folder.dataset}: not published (no s3://{self.settings.bucket}/"
                               f"{manifest_key(folder.dataset)})")
        target = poll.manifest.generation
        if folder.current_generation() == target and folder.down_generation() == target:
            if status.get("last_error") is not None or status.get("local_generation") != target:
                update_status(folder, local_generation=target, last_error=None, failures=0)
            return SyncResult(folder.dataset, target, target, "current", None)
        meter = self.meter(folder.dataset)
        replica = Replica(folder, self.client, self.settings.bucket, self.settings.transfer, self.stop,
                          on_bytes=meter.advance, on_plan=meter.plan,
                          pause=timed_pause(self.settings.debug_pauses, self.stop),
                          lazy_bytes=self.settings.lazy_bytes)
        with dataset_lock(folder):
            result = replica.sync(poll.manifest)
        fetch = result.fetch
        update_status(folder, local_generation=result.generation, last_error=None, failures=0,
                      last_sync=utc_now_iso(), requests=self.counter.snapshot(),
                      last_pass={"route": result.route, "from": result.previous, "to": result.generation,
                                 "objects": fetch.objects if fetch else 0, "bytes": fetch.bytes if fetch else 0,
                                 "seconds": round(fetch.seconds, 3) if fetch else 0.0,
                                 "mb_per_second": round(fetch.mb_per_second, 1) if fetch else 0.0,
                                 "retries": fetch.retries if fetch else 0})
        log.info("sync done dataset=%s generation=%d from=%s route=%s", folder.dataset, result.generation,
                 result.previous, result.route)
        return result

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        """Until ``stop`` is set: sync every active dataset, poll each every ``interval``, ship logs.

        A failing dataset is tried again after a growing wait (with jitter, at most
        ``retry_max_seconds``); the node keeps serving its last good generation meanwhile.
        """
        settings = self.settings
        log.info("boxlink run root=%s bucket=%s interval=%.2f instance=%s concurrency=%d", settings.root,
                 settings.bucket, settings.interval, settings.instance_id, settings.transfer.concurrency)
        due: dict[str, float] = {}
        failures: dict[str, int] = {}
        while not self.stop.is_set():
            for folder in NodeLayout(settings.root).datasets():
                if self.stop.is_set():
                    break
                name = folder.dataset
                if not folder.is_active() or due.get(name, 0.0) > time.monotonic():
                    continue
                try:
                    self.sync_dataset(name)
                    failures[name] = 0
                    due[name] = time.monotonic() + settings.interval
                except Cancelled:
                    break
                except BoxlinkError as exc:
                    failures[name] = failures.get(name, 0) + 1
                    due[name] = time.monotonic() + self._retry_wait(failures[name])
                    log.error("sync failed dataset=%s failures=%d retry_in=%.1f error=%r", name, failures[name],
                              due[name] - time.monotonic(), str(exc))
                except Exception as exc:  # a bug must not stop replication of the others; it is logged in full
                    failures[name] = failures.get(name, 0) + 1
                    due[name] = time.monotonic() + self._retry_wait(failures[name])
                    log.exception("sync crashed dataset=%s", name)
                    update_status(folder, last_error=f"internal error: {exc!r}", last_error_at=utc_now_iso())
            self.ship_logs()
            soonest = min([d - time.monotonic() for d in due.values()] + [min(settings.interval, 1.0)])
            self.stop.wait(max(soonest, 0.05))
        self.ship_logs(final=True)
        log.info("boxlink run stopped")

    def _retry_wait(self, failures: int) -> float:
        ceiling = min(self.settings.retry_max_seconds, self.settings.interval * 2 ** min(failures - 1, 16))
        return ceiling * random.uniform(0.5, 1.0)

    def ship_logs(self, final: bool = False) -> None:
        """Ship what is due; after a failure, wait longer before trying again (except at the end)."""
        if not final and time.monotonic() < self._ship_due:
            return
        try:
            self.shipper.ship(final=final)
            self._ship_failures = 0
        except (BoxlinkError, OSError) as exc:
            self._ship_failures += 1
            self._ship_due = time.monotonic() + self._retry_wait(self._ship_failures)
            log.warning("log shipping failed failures=%d error=%r", self._ship_failures, str(exc))
