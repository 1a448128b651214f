"""Performance drift once labels arrive: each fraud score joined to the chargeback that comes
weeks later, per model version and decision, so precision at each decision, the share of
charged-back orders each decision let through, and calibration (the mean score against the
share charged back) can be read as they settle.

Scored orders are remembered by order id, the newest `max_orders` (a chargeback for an order
no longer remembered is counted late); the ids are the merchant's scoped ones, as the store
keeps them, so a chargeback event joins the order it names in that shop only."""
from __future__ import annotations

from collections import Counter, OrderedDict


class LabelJoin:
    def __init__(self, max_orders: int = 200_000) -> None:
        self.max_orders = max_orders
        self._scored: OrderedDict[str, tuple[str, str]] = OrderedDict()  # order id -> (version, decision)
        self.scored: Counter[tuple[str, str]] = Counter()  # (version, decision) -> orders scored
        self.charged_back: Counter[tuple[str, str]] = Counter()  # of those, later charged back
        self.score_sum: Counter[str] = Counter()  # version -> the sum of its scores (calibration)
        self.late = 0

    def record(self, order_id: str, version: str, decision: str, score: float) -> None:
        if order_id in self._scored:  # a retried order is one order
            return
        self._scored[order_id] = (version, decision)
        while len(self._scored) > self.max_orders:
            self._scored.popitem(last=False)
        self.scored[(version, decision)] += 1
        self.score_sum[version] += score

    def observe(self, events: list[dict]) -> None:
        """Events as the store applied them: chargebacks settle the orders they name, once."""
        for event in events:
            if event.get("event_type") != "chargeback":
                continue
            order_id = (event.get("payload") or {}).get("order_id")
            scored = self._scored.pop(order_id, None) if isinstance(order_id, str) else None
            if scored is None:
                self.late += 1
                continue
            self.charged_back[scored] += 1
