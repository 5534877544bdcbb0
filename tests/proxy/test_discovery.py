"""Prometheus file-based service discovery written by tile-proxy from the registry."""

from __future__ import annotations

import json
import time

from tests.processes import wait_for
from tests.proxy.conftest import ADDRESSES

A, B = ADDRESSES
POLL = 1.0
TTL = 3
SLACK = 1.0  # a poll's own work (LIST, GETs, the write) on a loaded 2-core machine


def sd_targets(path) -> list[str]:
    try:
        groups = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [target for group in groups for target in group["targets"]]


def record_listed(bucket, key: str) -> bool:
    return any(o["Key"] == key for o in bucket.client.list_objects_v2(Bucket=bucket.name, Prefix=key)
               .get("Contents", []))


def test_a_node_enters_the_targets_within_one_poll_and_leaves_within_its_ttl_after_sigkill(
        nodes, proxies, s3_bucket, tmp_path):
    sd_file = tmp_path / "sd" / "gigatile-nodes.json"
    proxy = proxies.start("--sd-file", str(sd_file), "--poll-seconds", str(POLL))
    wait_for(lambda: sd_file.exists(), 10, "the targets file")
    assert sd_targets(sd_file) == []
    node = nodes.start(A, ttl_seconds=TTL)
    key = f"proxy/{A}.p{node.port}"
    wait_for(lambda: record_listed(s3_bucket, key), 15, "the node's record")
    wait_for(lambda: node.id in sd_targets(sd_file), POLL + SLACK, "the node in the targets file (one poll)")
    group = json.loads(sd_file.read_text())[0]
    assert group["labels"]["gigatile_record"] == key and group["labels"]["gigatile_datasets"] == "covers"

    other = nodes.start(B, ttl_seconds=TTL)
    wait_for(lambda: set(sd_targets(sd_file)) == {node.id, other.id}, 15, "both nodes in the targets file")
    node.process.signal(9)  # SIGKILL: its record stays in S3 and is no longer renewed
    killed = time.monotonic()
    wait_for(lambda: sd_targets(sd_file) == [other.id], TTL + POLL + SLACK, "the killed node out (its TTL)")
    assert time.monotonic() - killed <= TTL + POLL + SLACK
    assert record_listed(s3_bucket, key)  # still there (swept only after --sweep-ttls x TTL)
    assert proxy.status()["registry"]["sd_file"] == str(sd_file)
