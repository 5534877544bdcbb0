"""Logs up: every closed (rolled) file exactly once, across rotations and restarts; the live file refreshed."""

from __future__ import annotations

import hashlib
import logging
import logging.handlers
from pathlib import Path

from boxlink.logship import LogShipper, rolled_key
from boxlink.remote import RequestCounter

PREFIX = "logs/node-1/"


def _shipper(bucket, root: Path, open_interval: float = 3600.0) -> LogShipper:
    return LogShipper(bucket.client, bucket.name, "node-1", root / "data" / "log", root / "data" / ".boxlink" / "ls",
                      open_interval=open_interval)


def _listing(bucket) -> dict[str, str]:
    """key -> sha256 metadata of everything shipped."""
    found = {}
    for item in bucket.client.list_objects_v2(Bucket=bucket.name, Prefix=PREFIX).get("Contents", []):
        head = bucket.client.head_object(Bucket=bucket.name, Key=item["Key"])
        found[item["Key"]] = head["Metadata"]["sha256"]
    return found


def _rotating_logger(path: Path) -> tuple[logging.Logger, logging.handlers.RotatingFileHandler]:
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=2000, backupCount=3)
    logger = logging.getLogger(f"logship-test-{path}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, handler


def test_each_rolled_file_is_uploaded_exactly_once(s3_bucket, tmp_path):
    logs = tmp_path / "data" / "log"
    (logs / "render").mkdir(parents=True)
    logger, handler = _rotating_logger(logs / "render" / "render.log")
    (logs / "bootstrap.log.2026-11-22").write_text("yesterday's bootstrap log\n")
    counter = RequestCounter()
    counter.attach(s3_bucket.client)
    try:
        for n in range(30):  # ~1600 bytes: no rotation yet
            logger.info("line=%d %s", n, "x" * 40)
        first = _shipper(s3_bucket, tmp_path).ship()
        assert first.uploaded == 2  # the live file and the closed bootstrap file
        for n in range(30, 120):  # rotates: render.log.1, .2, .3 appear and get renamed on every roll
            logger.info("line=%d %s", n, "x" * 40)
            if n % 25 == 0:
                _shipper(s3_bucket, tmp_path).ship()  # a restart each time: only the state file remembers
        _shipper(s3_bucket, tmp_path).ship()
        puts_before = counter.snapshot().get("PutObject", 0)
        again = _shipper(s3_bucket, tmp_path).ship(final=True)
    finally:
        logger.removeHandler(handler)
        handler.close()

    assert again.uploaded == 0 and counter.snapshot().get("PutObject", 0) == puts_before  # nothing new: no PUT
    shipped = _listing(s3_bucket)
    closed = {p for p in logs.rglob("*") if p.is_file() and not p.name.endswith(".log")}
    for path in closed:  # every rolled file still here is in S3 once, under its content's key
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert list(shipped.values()).count(digest) == 1, path
        key = PREFIX + rolled_key(path.relative_to(logs).as_posix(), path.stat().st_mtime_ns, digest)
        assert shipped[key] == digest
    assert len(set(shipped.values())) == len(shipped)  # no content twice under two keys
    live = logs / "render" / "render.log"
    assert shipped[PREFIX + "render/render.log"] == hashlib.sha256(live.read_bytes()).hexdigest()
    assert PREFIX + "bootstrap.log.2026-11-22" not in shipped  # closed files get a unique key
    assert any(k.startswith(PREFIX + "bootstrap.log.2026-11-22.") for k in shipped)


def test_live_file_at_most_every_interval_and_at_shutdown(s3_bucket, tmp_path):
    logs = tmp_path / "data" / "log"
    logs.mkdir(parents=True)
    live = logs / "boxlink.log"
    now = [1000.0]
    shipper = _shipper(s3_bucket, tmp_path, open_interval=60.0)
    shipper.clock = lambda: now[0]
    live.write_text("one\n")

    assert shipper.ship().uploaded == 1
    live.write_text("one\ntwo\n")
    now[0] += 30
    assert shipper.ship().uploaded == 0  # changed, but shipped 30 s ago
    now[0] += 31
    assert shipper.ship().uploaded == 1
    assert shipper.ship().uploaded == 0  # unchanged
    live.write_text("one\ntwo\nthree\n")
    assert shipper.ship(final=True).uploaded == 1  # shutdown: the last lines go up now
    body = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=PREFIX + "boxlink.log")["Body"].read()
    assert body == b"one\ntwo\nthree\n"
