"""Rendezvous hashing: spread, stability, and a node leaving or joining moves only its share."""

from __future__ import annotations

from proxy.routing import pick, rank, shares

KEYS = [f"/tiles/covers/{z}/{x}/{y}.jpg?v=3".encode() for z in range(8, 12) for x in range(50) for y in range(25)]
NODES = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080"]


def test_keys_spread_evenly():
    owners = [pick(k, NODES) for k in KEYS]
    for node in NODES:
        assert abs(owners.count(node) / len(KEYS) - 0.25) < 0.03, node
    assert all(abs(share - 0.25) < 0.03 for share in shares(NODES).values())


def test_a_node_leaving_moves_only_its_own_keys():
    before = {k: pick(k, NODES) for k in KEYS}
    gone = NODES[1]
    after = {k: pick(k, [n for n in NODES if n != gone]) for k in KEYS}
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == gone}
    # ... and each moved key lands on its old second choice, which is the fallback order.
    assert all(after[k] == rank(k, NODES)[1] for k in moved)


def test_a_node_joining_takes_only_its_share():
    before = {k: pick(k, NODES) for k in KEYS}
    after = {k: pick(k, [*NODES, "10.0.0.5:8080"]) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == "10.0.0.5:8080" for k in moved)
    assert abs(len(moved) / len(KEYS) - 0.2) < 0.03


def test_rank_is_stable_and_complete():
    key = b"/tiles/covers/3/1/2.png"
    assert rank(key, NODES) == rank(key, list(reversed(NODES)))
    assert sorted(rank(key, NODES)) == sorted(NODES)
    assert rank(key, NODES)[0] == pick(key, NODES)
    assert rank(key, []) == [] and pick(key, []) is None and shares([]) == {}
