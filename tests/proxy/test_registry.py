"""The registry with real nodes and records in SeaweedFS: appear, lapse, die, and records refused."""

from __future__ import annotations

import socket
import threading

import httpx

from gigaformat.layout import SERVING, DatasetDir
from tests.processes import wait_for
from tests.proxy.conftest import ADDRESSES, tile_paths, write_record

A, B = ADDRESSES


def test_node_appears_after_registering_and_leaves_with_its_record(nodes, proxies, s3_bucket):
    proxy = proxies.start()
    assert proxy.live() == []
    folder = DatasetDir(nodes.roots[A], "covers")
    (folder.path / SERVING).unlink(missing_ok=True)
    node = nodes.start(A)  # registers itself once /readyz is green
    proxy.wait_live({node.id})
    # ... and then says so on its disk (boxlink holds a lazy start's fill until a node serves the generation)
    wait_for(lambda: folder.serving_generation() == folder.current_generation(), 10, "synch.serving")
    assert httpx.get(proxy.url + tile_paths(1)[0]).status_code == 200
    hand = nodes.start(B, register=False)
    key = write_record(s3_bucket, B, hand.port)
    proxy.wait_live({node.id, hand.id})
    s3_bucket.client.delete_object(Bucket=s3_bucket.name, Key=key)  # what a node does on a clean stop
    proxy.wait_live({node.id})
    wait_for(lambda: all(row["id"] != hand.id for row in proxy.status()["backends"]), 10, "record gone")
    assert "backend deregistered id=" + hand.id in proxy.process.output()


def test_node_disappears_when_its_heartbeat_lapses(nodes, proxies, s3_bucket):
    node = nodes.start(B, register=False)  # alive and ready; only the hand-written record names it
    proxy = proxies.start()
    write_record(s3_bucket, B, node.port, ttl_seconds=4)  # fresh for 3-4 s (heartbeats have whole seconds)
    proxy.wait_live({node.id}, timeout=10)
    proxy.wait_live(set(), timeout=15)  # nobody renews: stale after 4 s although /readyz is still 200
    row = next(row for row in proxy.status()["backends"] if row["id"] == node.id)
    assert row["state"] == "stale" and row["fresh"] is False
    assert httpx.get(node.url + "/readyz").status_code == 200
    write_record(s3_bucket, B, node.port, ttl_seconds=30)  # renewed: back in rotation
    proxy.wait_live({node.id}, timeout=10)


def test_node_disappears_when_killed(nodes, proxies):
    a, b = nodes.start(A), nodes.start(B)
    proxy = proxies.start()
    proxy.wait_live({a.id, b.id})
    a.process.signal(9)  # SIGKILL: the record stays, fresh, but /readyz no longer answers
    proxy.wait_live({b.id}, timeout=10)
    row = next(row for row in proxy.status()["backends"] if row["id"] == a.id)
    assert row["state"] == "unhealthy" and row["error"]
    paths = tile_paths(30)
    with httpx.Client(base_url=proxy.url) as client:
        assert {client.get(p).status_code for p in paths} == {200}


class CountingListener:
    """A TCP listener that only counts connections: traffic there would prove a refused record was used."""

    def __init__(self, address: str):
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


def test_registrations_outside_allowed_networks_are_ignored(nodes, proxies, s3_bucket):
    trap = CountingListener("127.0.0.4")  # outside the tests' --allow-net 127.0.0.2/31
    try:
        keys = [write_record(s3_bucket, "127.0.0.4", trap.port), write_record(s3_bucket, "10.1.2.3", 80),
                write_record(s3_bucket, "192.0.2.1", 8080)]
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="proxy/garbage.p1", Body=b"{not json")
        node = nodes.start(A)
        proxy = proxies.start()
        proxy.wait_live({node.id})
        with httpx.Client(base_url=proxy.url) as client:
            assert {client.get(p).status_code for p in tile_paths(40)} == {200}
        status = proxy.status()
        ignored = {row["key"]: row["error"] for row in status["backends"] if row["state"] == "ignored"}
        for key in keys:
            assert "outside --allow-net" in ignored[key], ignored
        assert "malformed" in ignored["proxy/garbage.p1"]
        assert status["live"] == [node.id]
        assert trap.accepted == 0
        log = proxy.process.output()
        assert "registration ignored key=proxy/10.1.2.3.p80" in log
    finally:
        trap.close()
