"""Fraud training rows from an event log: every `order` event with the input vector the server
would have built when it was scored (the log replayed in event-time order through the same
feature store and network graph, each order read before it is applied), its label (a
chargeback for it anywhere in the log: fraud, a friendly dispute included, since that is all
a shop learns), and a split by time."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hanzo.server.features.store import FeatureStore
from hanzo.server.surfaces.fraud_inputs import FraudInputs, FraudOrder


@dataclass
class FraudRows:
    x: np.ndarray  # float32 [n, features], NaN where unknown
    y: np.ndarray  # float32 [n], 1: charged back
    amount: np.ndarray  # float64 [n]
    timestamp: np.ndarray  # int64 [n], ms
    order_ids: list[str]
    orders: list[FraudOrder]
    names: tuple[str, ...]

    def take(self, rows: np.ndarray) -> "FraudRows":
        return FraudRows(self.x[rows], self.y[rows], self.amount[rows], self.timestamp[rows],
                         [self.order_ids[i] for i in rows], [self.orders[i] for i in rows], self.names)

    def __len__(self) -> int:
        return len(self.y)


def signal_names(records: list[dict]) -> tuple[str, ...]:
    """Every processor signal the orders of the log carry, sorted: the model's signal inputs."""
    names = set()
    for record in records:
        if record["event_type"] == "order":
            names.update((record["payload"].get("signals") or {}).keys())
    return tuple(sorted(names))


def build_rows(records: list[dict], inputs: FraudInputs, batch: int = 2000) -> FraudRows:
    """`records` sorted by event time (ties in log order). Non-order events are applied in
    batches; each order is read at its own moment, then applied."""
    store = FeatureStore()
    charged = {r["payload"].get("order_id") for r in records if r["event_type"] == "chargeback"}
    rows, orders, pending = [], [], []
    seen: set[str] = set()
    for record in records:
        if record["event_type"] != "order":
            pending.append(record)
            if len(pending) >= batch:
                store.apply(pending)
                pending = []
            continue
        order = FraudOrder.from_event(record)
        if order.order_id in seen:  # the log holds an order once; a repeat is the same order
            continue
        seen.add(order.order_id)
        if pending:
            store.apply(pending)
            pending = []
        rows.append(vectors(store, inputs, [order])[0])
        orders.append(order)
        store.apply([record])
    names = inputs.names
    x = np.stack(rows) if rows else np.zeros((0, len(names)), np.float32)
    return FraudRows(x, np.array([o.order_id in charged for o in orders], np.float32),
                     np.array([o.amount for o in orders], np.float64),
                     np.array([o.timestamp for o in orders], np.int64), [o.order_id for o in orders], orders, names)


def vectors(store: FeatureStore, inputs: FraudInputs, orders: list[FraudOrder]) -> np.ndarray:
    """The inputs of `orders` from a synchronous store (the server reads the same through its
    feature service)."""
    as_of = max(o.timestamp for o in orders)
    blocks = [store.read(entity, keys, list(names), as_of=as_of) for entity, keys, names in inputs.reads(orders)]
    return inputs.assemble(orders, blocks, store.graph.tallies([o.event() for o in orders]))


def split_by_time(rows: FraudRows, shares: tuple[float, float] = (0.6, 0.2)) -> tuple[FraudRows, FraudRows, FraudRows]:
    """(train, validation, test): the earliest orders, the next, the latest."""
    order = np.argsort(rows.timestamp, kind="stable")
    a = int(len(order) * shares[0])
    b = int(len(order) * (shares[0] + shares[1]))
    return rows.take(order[:a]), rows.take(order[a:b]), rows.take(order[b:])
