"""Records nobody renews are swept after their grace period, by several proxies at once, and a fresh or
rewritten record never is."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

from gigaformat.clock import iso
from gigaformat.registration import Registration
from proxy.registry import Registry
from proxy.settings import ProxySettings, parse_networks
from tests.processes import wait_for
from tests.proxy.conftest import ADDRESSES, ALLOW_NET

A, B = ADDRESSES


def put_record(bucket, address: str, port: int, ttl_seconds: int, age_seconds: float = 0.0) -> str:
    """A record whose heartbeat is ``age_seconds`` old; returns its ETag."""
    beat = iso(datetime.now(UTC) - timedelta(seconds=age_seconds))
    record = Registration(address=address, port=port, started=beat, heartbeat=beat, ttl_seconds=ttl_seconds)
    return bucket.client.put_object(Bucket=bucket.name, Key=record.key, Body=record.to_bytes())["ETag"]


def keys(bucket) -> set[str]:
    listing = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="proxy/")
    return {o["Key"] for o in listing.get("Contents", [])}


class Renewer(threading.Thread):
    """Rewrites a record every 0.3 s, as a live node's heartbeat does."""

    def __init__(self, bucket, address: str, port: int, ttl_seconds: int):
        super().__init__(daemon=True)
        self.args = (bucket, address, port, ttl_seconds)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.3):
            put_record(*self.args)


def test_abandoned_records_are_swept_once_by_several_proxies_and_a_renewed_one_never(proxies, s3_bucket):
    put_record(s3_bucket, A, 9001, ttl_seconds=2, age_seconds=3600)  # a SIGKILLed node's: heartbeat an hour old
    renewer = Renewer(s3_bucket, B, 9002, ttl_seconds=2)  # alive: renewed every 0.3 s, grace 4 s
    put_record(s3_bucket, B, 9002, ttl_seconds=2)
    renewer.start()
    try:
        first, second = proxies.start("--sweep-ttls", "2"), proxies.start("--sweep-ttls", "2")  # grace 2 x TTL
        wait_for(lambda: keys(s3_bucket) == {f"proxy/{B}.p9002"}, 20, "the abandoned record swept")
        wait_for(lambda: first.status()["registry"]["swept"] + second.status()["registry"]["swept"] == 1, 5,
                 "the sweep counted")
        # the proxy that did not sweep drops the record at its next poll of the registry
        wait_for(lambda: first.records() == second.records() == {f"proxy/{B}.p9002"}, 10,
                 "both proxies to drop the swept record")
        logs = first.process.output() + second.process.output()
        assert logs.count(f"registration swept key=proxy/{A}.p9001") == 1, logs[-3000:]
        assert f"swept key=proxy/{B}.p9002" not in logs
        assert f"proxy/{B}.p9002" in keys(s3_bucket)
    finally:
        renewer.stopping.set()
        renewer.join(5)


def test_a_young_record_is_not_swept_whatever_its_heartbeat_says(proxies, s3_bucket):
    """A skewed node clock writes an old heartbeat; S3's LastModified is young, so the record stays."""
    put_record(s3_bucket, A, 9003, ttl_seconds=30, age_seconds=3600)
    proxy = proxies.start("--sweep-ttls", "2")  # grace 60 s
    wait_for(lambda: proxy.status()["registry"]["last_poll"] is not None, 10, "a poll")
    assert f"proxy/{A}.p9003" in keys(s3_bucket)
    assert proxy.status()["registry"]["swept"] == 0


def test_a_record_rewritten_after_the_listing_is_not_deleted(s3_bucket, tmp_path):
    settings = ProxySettings(bucket=s3_bucket.name, cache_dir=tmp_path, allow_nets=parse_networks(ALLOW_NET),
                             sweep_ttls=0.1)
    registry = Registry(settings, s3_bucket.client, http=None)

    async def scenario() -> tuple[list, int, int]:
        put_record(s3_bucket, A, 9004, ttl_seconds=10, age_seconds=3600)
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="proxy/garbage.p1", Body=b"{not json")
        await asyncio.sleep(3.5)  # LastModified (whole seconds) older than the grace: 1 s, 3 s for the malformed
        await registry.poll()
        assert registry.abandoned(datetime.now(UTC)) == []  # S3 just became reachable: nodes get a TTL to renew
        registry.reachable_since -= timedelta(minutes=1)
        found = registry.abandoned(datetime.now(UTC))
        put_record(s3_bucket, A, 9004, ttl_seconds=10)  # the node came back between the LIST and the delete
        swept = await registry.sweep()
        await registry.poll()  # the new version is read: fresh, nothing to sweep
        return found, swept, await registry.sweep()

    found, swept, later = asyncio.run(scenario())
    assert sorted(key for key, _ in found) == [f"proxy/{A}.p9004", "proxy/garbage.p1"]
    assert (swept, later) == (1, 0)  # the malformed record only
    assert keys(s3_bucket) == {f"proxy/{A}.p9004"}
