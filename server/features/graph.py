"""The fraud network: every order joins its user, card, device, shipping address and email into
one connected component (union-find, kept incrementally as orders arrive); a chargeback marks
its order's component. A new order is read against the components its entities belong to
before it is applied: how big the network it joins is, and how much fraud was already seen
in it. Rings that share devices or drop addresses show up as one large component.

The graph answers as of the newest event applied (no time travel): the offline join replays
the log in event-time order through the same store, so a training row reads the graph as it
stood at the row's moment, and a served order reads it as it stands now."""
from __future__ import annotations

from collections import deque

import numpy as np

from hanzo.kernels import union_find as uf

from .tables import EntityIndex

# Order payload fields that name graph nodes (user_id is the event's own field).
NODE_FIELDS = (("user", "user_id"), ("card", "card_id"), ("device", "device_id"),
               ("address", "shipping_address_id"), ("email", "email"))
# Tallies kept per component: entities, then one count per kind of node, orders, chargebacks.
COLUMNS = ("entities", "users", "cards", "devices", "addresses", "emails", "orders", "chargebacks")
_KIND_COLUMN = {kind: 1 + k for k, (kind, _) in enumerate(NODE_FIELDS)}
ORDERS, CHARGEBACKS = COLUMNS.index("orders"), COLUMNS.index("chargebacks")
# What a read gives per order: the component's tallies, then how many of the order's own
# card, device, address and email were in an order charged back (the blocklist).
READ_COLUMNS = COLUMNS + ("blocklisted",)


def order_nodes(record: dict) -> list[str]:
    """The graph keys an order event (or a scored order) names: "kind:value"."""
    payload = record.get("payload") or {}
    out = []
    for kind, field in NODE_FIELDS:
        value = record.get("user_id") if field == "user_id" else payload.get(field)
        if value is None and field == "device_id":
            value = (record.get("context") or {}).get("device")
        if value:
            out.append(f"{kind}:{value}")
    return out


class EntityGraph:
    shared = False  # held in this process (see redis_graph.py for the shared one)

    def __init__(self, chargeback_horizon_ms: int = 180 * 86_400_000) -> None:
        self.index = EntityIndex("graph")
        self.parent = np.zeros(0, np.int64)
        self.stats = np.zeros((0, len(COLUMNS)), np.float64)
        self.charged = np.zeros(0, np.int32)  # per node: chargebacks of orders that used it
        # order_id -> (its nodes, its time, charged back yet), for its chargeback weeks later.
        # A chargeback more than the horizon after its order is not counted; the entries are
        # dropped a horizon later still, so a late event cannot change what was counted.
        self.order_node: dict[str, tuple[tuple[int, ...], int, bool]] = {}
        self._order_times: deque[tuple[int, str]] = deque()
        self.horizon_ms = chargeback_horizon_ms

    def __len__(self) -> int:
        return len(self.index)

    def _nodes(self, keys: list[str]) -> np.ndarray:
        """Rows of `keys`, adding new ones as singleton components."""
        before = len(self.index)
        rows = np.asarray(self.index.rows_for(keys), np.int64)
        after = len(self.index)
        if after > before:
            if after > len(self.parent):
                size = max(after, 2 * len(self.parent), 1024)
                parent = np.arange(size, dtype=np.int64)
                parent[:len(self.parent)] = self.parent
                stats = np.zeros((size, len(COLUMNS)), np.float64)
                stats[:len(self.stats)] = self.stats
                charged = np.zeros(size, np.int32)
                charged[:len(self.charged)] = self.charged
                self.parent, self.stats, self.charged = parent, stats, charged
            for key, row in zip(self.index.keys[before:after], range(before, after)):
                self.stats[row, 0] = 1.0
                self.stats[row, _KIND_COLUMN[key.split(":", 1)[0]]] = 1.0
        return rows

    def apply(self, orders: list[dict], chargebacks: list[dict], watermark: int) -> None:
        """Orders first, so a chargeback in the same batch finds its order: the result does not
        depend on how the log was cut into batches."""
        if orders:
            groups = [order_nodes(r) for r in orders]
            flat = [key for keys in groups for key in keys]
            nodes = self._nodes(flat)
            ends = np.cumsum([len(keys) for keys in groups]).astype(np.int64)
            starts = ends - np.asarray([len(keys) for keys in groups], np.int64)
            uf.union_groups(self.parent, self.stats, nodes, starts, ends)
            counted = [i for i, keys in enumerate(groups) if keys]
            uf.add_at_roots(self.parent, self.stats, nodes[starts[counted]], ORDERS, np.ones(len(counted)))
            for i in counted:
                order_id = orders[i]["payload"].get("order_id")
                if order_id and order_id not in self.order_node:
                    self.order_node[order_id] = (tuple(nodes[starts[i]:ends[i]].tolist()), orders[i]["timestamp"],
                                                 False)
                    self._order_times.append((orders[i]["timestamp"], order_id))
        if chargebacks:
            marked = []
            for record in chargebacks:
                order_id = record["payload"].get("order_id")
                found = self.order_node.get(order_id)
                if found is not None and not found[2] and record["timestamp"] - found[1] <= self.horizon_ms:
                    marked.append(found[0][0])
                    self.charged[list(found[0])] += 1
                    # a second chargeback of the same order counts once
                    self.order_node[order_id] = (found[0], found[1], True)
            marked = np.asarray(marked, np.int64)
            if len(marked):
                uf.add_at_roots(self.parent, self.stats, marked, CHARGEBACKS, np.ones(len(marked)))
        self._forget(watermark)

    def _forget(self, watermark: int) -> None:
        times = self._order_times
        while times and times[0][0] < watermark - 2 * self.horizon_ms:
            self.order_node.pop(times.popleft()[1], None)

    def tallies(self, orders: list[dict]) -> np.ndarray:
        """float32 [len(orders), len(READ_COLUMNS)]: the component each order would form with
        what the graph holds now (its own new entities counted, the order itself not), and its
        blocklisted entities."""
        out = np.zeros((len(orders), len(READ_COLUMNS)), np.float64)
        groups = [order_nodes(r) for r in orders]
        known_rows, starts, ends = [], [], []
        for r, keys in enumerate(groups):
            rows = self.index.lookup(keys) if keys else np.zeros(0, np.int64)
            starts.append(len(known_rows))
            for key, row in zip(keys, rows.tolist()):
                if row >= 0:
                    known_rows.append(row)
                    # an account is not blocklisted by its own chargeback (a victim orders again)
                    out[r, -1] += self.charged[row] > 0 and not key.startswith("user:")
                else:  # an entity the graph has not met joins as a node of its own
                    out[r, 0] += 1.0
                    out[r, _KIND_COLUMN[key.split(":", 1)[0]]] += 1.0
            ends.append(len(known_rows))
        if known_rows:
            found = np.zeros((len(orders), len(COLUMNS)), np.float64)
            uf.group_tallies(self.parent, self.stats, np.asarray(known_rows, np.int64), np.asarray(starts, np.int64),
                             np.asarray(ends, np.int64), found)
            out[:, :len(COLUMNS)] += found
        return out.astype(np.float32)

    async def tallies_async(self, orders: list[dict]) -> np.ndarray:
        return self.tallies(orders)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able part, arrays) for a snapshot."""
        n = len(self.index)
        return ({"keys": self.index.keys, "orders": list(self._order_times),
                 "order_node": {k: [list(v[0]), v[1], v[2]] for k, v in self.order_node.items()}},
                {"graph.parent": self.parent[:n].copy(), "graph.stats": self.stats[:n].copy(),
                 "graph.charged": self.charged[:n].copy()})

    def restore(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        self.__init__(self.horizon_ms)
        self._nodes(list(state["keys"]))
        n = len(self.index)
        self.parent[:n] = arrays["graph.parent"]
        self.stats[:n] = arrays["graph.stats"]
        self.charged[:n] = arrays["graph.charged"]
        self.order_node = {k: (tuple(int(i) for i in v[0]), int(v[1]), bool(v[2]))
                           for k, v in state["order_node"].items()}
        self._order_times = deque((int(t), o) for t, o in state["orders"])
