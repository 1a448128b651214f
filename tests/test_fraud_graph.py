"""The fraud network (server/features/graph.py): union-find tallies against connected components
found by brute force, the same whatever the batching, chargebacks counted once, and a
snapshot that restores the same graph."""
from __future__ import annotations

import numpy as np
import pytest

from hanzo.server.features.graph import COLUMNS, READ_COLUMNS, EntityGraph, order_nodes


def _orders(seed: int, n: int, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        payload = {"order_id": f"o{start + i}", "card_id": f"c{rng.integers(60)}",
                   "device_id": f"d{rng.integers(80)}", "shipping_address_id": f"a{rng.integers(70)}"}
        if rng.random() < 0.5:
            payload["email"] = f"e{rng.integers(50)}"
        out.append({"event_type": "order", "timestamp": 1_000 * (start + i), "user_id": f"u{rng.integers(90)}",
                    "payload": payload})
    return out


def _brute(applied: list[dict], charged: set[str], pending: dict) -> np.ndarray:
    """Tallies of the component `pending` would form, by breadth-first search over all orders."""
    edges: dict[str, set[str]] = {}
    for order in applied:
        keys = order_nodes(order)
        for a in keys:
            edges.setdefault(a, set()).update(keys)
    start = order_nodes(pending)
    seen, frontier = set(start), list(start)
    while frontier:
        node = frontier.pop()
        for other in edges.get(node, ()):
            if other not in seen:
                seen.add(other)
                frontier.append(other)
    tallies = dict.fromkeys(READ_COLUMNS, 0.0)
    tallies["entities"] = len(seen)
    plural = {"user": "users", "card": "cards", "device": "devices", "address": "addresses", "email": "emails"}
    for node in seen:
        tallies[plural[node.split(":")[0]]] += 1
    members = [o for o in applied if set(order_nodes(o)) & seen]
    tallies["orders"] = len(members)
    tallies["chargebacks"] = sum(1 for o in members if o["payload"]["order_id"] in charged)
    blocked = {key for o in applied if o["payload"]["order_id"] in charged for key in order_nodes(o)}
    tallies["blocklisted"] = sum(1 for key in start if key in blocked and not key.startswith("user:"))
    return np.array([tallies[c] for c in READ_COLUMNS], np.float32)


def _chargebacks(order_ids: list[str], at: int) -> list[dict]:
    return [{"event_type": "chargeback", "timestamp": at, "user_id": None, "payload": {"order_id": o}}
            for o in order_ids]


@pytest.mark.parametrize("batch", [1, 7, 500])
def test_tallies_match_connected_components_whatever_the_batching(batch):
    orders = _orders(0, 240)
    charged = [f"o{i}" for i in range(0, 240, 17)]
    graph = EntityGraph()
    events = orders + _chargebacks(charged + charged[:3], 240_000)  # three charged back twice
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        graph.apply([e for e in chunk if e["event_type"] == "order"],
                    [e for e in chunk if e["event_type"] == "chargeback"], chunk[-1]["timestamp"])
    pending = _orders(1, 40, start=10_000) + [{"event_type": "order", "timestamp": 0, "user_id": "new-user",
                                                "payload": {"order_id": "x", "card_id": "new-card"}}]
    got = graph.tallies(pending)
    for row, order in zip(got, pending):
        np.testing.assert_array_equal(row, _brute(orders, set(charged), order))
    assert got[-1].tolist() == [2, 1, 1, 0, 0, 0, 0, 0, 0]  # two entities never seen: a fresh component
    assert got[:, COLUMNS.index("chargebacks")].max() > 0 and got[:, -1].max() > 0


def test_a_chargeback_in_the_same_batch_as_its_order_counts_and_late_ones_are_forgotten():
    graph = EntityGraph(chargeback_horizon_ms=10_000)
    order = _orders(2, 1)[0]
    graph.apply([order], _chargebacks(["o0"], 5), 5)
    assert graph.tallies([order])[0, COLUMNS.index("chargebacks")] == 1
    later = _orders(3, 1, start=1)[0]
    graph.apply([later], [], 1_000)
    graph.apply([], _chargebacks(["o1"], 50_000), 50_000)  # past the horizon: its order is forgotten
    assert graph.tallies([later])[0, COLUMNS.index("chargebacks")] == (1 if set(order_nodes(order)) &
                                                                      set(order_nodes(later)) else 0)


def test_state_restores_the_same_graph():
    graph = EntityGraph()
    graph.apply(_orders(4, 300), _chargebacks(["o3", "o30"], 300_000), 300_000)
    state, arrays = graph.state()
    copy = EntityGraph()
    copy.restore(state, arrays)
    pending = _orders(5, 50, start=5_000)
    np.testing.assert_array_equal(copy.tallies(pending), graph.tallies(pending))
    more = _orders(6, 50, start=6_000)
    for g in (graph, copy):
        g.apply(more, _chargebacks(["o10", "o6001"], 400_000), 400_000)
    np.testing.assert_array_equal(copy.tallies(pending), graph.tallies(pending))


def _event(record: dict, n: int) -> dict:
    return {"event_id": f"e{n}", "session_id": "", "context": {}, **record}


def test_the_redis_graph_answers_as_the_embedded_one(redis_client):
    """Replicas sharing Redis keep the network there (redis_graph.lua), applied in the feature
    tables' own script call; it must answer exactly as the in-process graph."""
    from hanzo.server.features.redis_store import RedisFeatureStore
    from hanzo.server.features.store import FeatureStore

    orders = _orders(7, 300)
    charged = [f"o{i}" for i in range(0, 300, 13)]
    events = [_event(r, n) for n, r in enumerate(orders + _chargebacks(charged + charged[:2], 300_000))]
    embedded, shared = FeatureStore(), RedisFeatureStore(redis_client, prefix="graphtest")
    for store in (embedded, shared):
        for i in range(0, len(events), 37):
            store.apply(events[i:i + 37])
    pending = _orders(8, 60, start=20_000)
    np.testing.assert_array_equal(shared.graph.tallies(pending), embedded.graph.tallies(pending))
    assert embedded.graph.tallies(pending)[:, -1].max() > 0
    # a replica catching up on events Redis already holds leaves the shared graph as it is
    shared.apply_catalog(events)
    np.testing.assert_array_equal(shared.graph.tallies(pending), embedded.graph.tallies(pending))
