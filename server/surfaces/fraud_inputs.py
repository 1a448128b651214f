"""The fraud models' input vector for one order, built one way for serving and training: the
feature store's velocity, device, behaviour and account features of the order's user,
session, card, device and shipping address (read before the order itself is applied, so each
counts the orders before it), the fraud network's tallies for the component the order joins,
the order's own fields, and the processor signals the model version was trained with.

Missing values stay NaN: the trees route them, the network's graph imputes them inside its
ONNX graph, and reasons say nothing about what is not known."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..features.graph import READ_COLUMNS as NETWORK_COLUMNS

# entity -> (the order field naming it, the features read for it)
STORE_FEATURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "user": ("user_id", (
        "user_orders_1h", "user_orders_24h", "user_order_count_30d", "user_avg_order_value_30d", "user_amount_24h",
        "user_distinct_cards_24h", "user_distinct_cards_30d", "user_distinct_devices_30d",
        "user_distinct_shipping_addresses_30d", "user_views_24h", "user_age")),
    "session": ("session_id", (
        "session_duration", "session_event_count_24h", "session_product_views_24h", "session_since_page_view")),
    "card": ("card_id", (
        "card_orders_1h", "card_orders_24h", "card_amount_24h", "card_distinct_shipping_addresses_30d",
        "card_distinct_users_30d", "card_age")),
    "device": ("device_id", ("device_distinct_users_30d", "device_orders_24h", "device_distinct_cards_24h",
                             "device_age")),
    "address": ("shipping_address_id", ("address_orders_24h", "address_distinct_users_30d",
                                        "address_distinct_cards_30d")),
}
NETWORK_FEATURES = tuple(f"network_{c}" for c in NETWORK_COLUMNS)
ORDER_FEATURES = ("order_amount", "order_log_amount", "order_items", "order_amount_over_user_average",
                  "order_ships_elsewhere", "order_anonymous")
BASE_FEATURES: tuple[str, ...] = tuple(n for _, names in STORE_FEATURES.values() for n in names) + \
    NETWORK_FEATURES + ORDER_FEATURES


def signal_feature(name: str) -> str:
    return f"signal_{name}"


@dataclass
class FraudOrder:
    """What ScoreFraud is asked about, as plain values (api/ translates the proto)."""
    order_id: str
    timestamp: int  # ms
    amount: float
    user_id: str = ""
    session_id: str = ""
    currency: str = ""
    card_id: str = ""
    device_id: str = ""
    ip: str = ""
    email: str = ""
    shipping_address_id: str = ""
    billing_address_id: str = ""
    items: list[dict] | None = None
    signals: dict[str, float] | None = None
    context: dict[str, str] | None = None

    def field(self, name: str) -> str:
        return getattr(self, name)

    def event(self, merchant_id: str = "") -> dict:
        """The `order` event this order is recorded as (idempotent by merchant and order id)."""
        payload = {"order_id": self.order_id, "amount": self.amount}
        for name in ("currency", "card_id", "device_id", "ip", "email", "shipping_address_id", "billing_address_id"):
            value = getattr(self, name)
            if value:
                payload[name] = value
        if self.items:
            payload["items"] = self.items
        if self.signals:
            payload["signals"] = dict(self.signals)
        event_id = f"order-{merchant_id}/{self.order_id}" if merchant_id else f"order-{self.order_id}"
        return {"event_id": event_id, "event_type": "order", "timestamp": self.timestamp,
                "user_id": self.user_id or None, "session_id": self.session_id or f"order:{self.order_id}",
                "payload": payload, "context": dict(self.context or {})}

    @classmethod
    def from_event(cls, record: dict) -> "FraudOrder":
        """An `order` event of the log as the order that was scored (training reads these)."""
        payload = record["payload"]
        device = payload.get("device_id") or (record.get("context") or {}).get("device") or ""
        return cls(order_id=str(payload.get("order_id") or record["event_id"]), timestamp=record["timestamp"],
                   amount=float(payload.get("amount") or 0.0), user_id=record.get("user_id") or "",
                   session_id=record.get("session_id") or "", currency=payload.get("currency") or "",
                   card_id=payload.get("card_id") or "", device_id=device, ip=payload.get("ip") or "",
                   email=payload.get("email") or "", shipping_address_id=payload.get("shipping_address_id") or "",
                   billing_address_id=payload.get("billing_address_id") or "", items=payload.get("items"),
                   signals=payload.get("signals"), context=record.get("context"))


@dataclass
class FraudInputs:
    """The input layout of one model version: the base features, then its signals."""
    signals: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return BASE_FEATURES + tuple(signal_feature(s) for s in self.signals)

    def reads(self, orders: list[FraudOrder]) -> list[tuple[str, list[str], tuple[str, ...]]]:
        """(entity, keys, feature names) the store is asked for: one read per entity."""
        return [(entity, [o.field(field) for o in orders], names) for entity, (field, names) in STORE_FEATURES.items()]

    def not_given(self, order: FraudOrder) -> np.ndarray:
        """bool [len(names)]: the inputs `order` left out (no card named, no items listed, a
        processor signal not sent). Their values say nothing about the order, so they are
        never given back as a reason, whatever the trees made of their absence."""
        mask = np.zeros(len(self.names), bool)
        col = 0
        for field, names in STORE_FEATURES.values():
            mask[col:col + len(names)] = not order.field(field)
            col += len(names)
        col += len(NETWORK_FEATURES)
        mask[col + ORDER_FEATURES.index("order_items")] = not order.items
        mask[col + ORDER_FEATURES.index("order_amount_over_user_average")] = not order.user_id
        signals = order.signals or {}
        for k, name in enumerate(self.signals):
            value = signals.get(name)
            mask[col + len(ORDER_FEATURES) + k] = value is None or not math.isfinite(value)
        return mask

    def assemble(self, orders: list[FraudOrder], blocks: list, network: np.ndarray) -> np.ndarray:
        """float32 [len(orders), len(names)] from the store's answers to `reads` (in order) and
        the graph's tallies; NaN where a value is not known."""
        out = np.full((len(orders), len(self.names)), np.nan, np.float32)
        col = 0
        for (entity, (field, names)), block in zip(STORE_FEATURES.items(), blocks):
            values = np.where(block.missing.astype(bool), np.nan, block.values)
            # an order that names no such entity (no card given) knows none of its features
            absent = np.array([not o.field(field) for o in orders])
            values[absent] = np.nan
            out[:, col:col + len(names)] = values
            col += len(names)
        out[:, col:col + len(NETWORK_FEATURES)] = network
        col += len(NETWORK_FEATURES)
        average = out[:, BASE_FEATURES.index("user_avg_order_value_30d")]
        for r, order in enumerate(orders):
            ratio = order.amount / average[r] if average[r] > 0 else math.nan
            out[r, col:col + len(ORDER_FEATURES)] = (
                order.amount, math.log1p(max(order.amount, 0.0)), len(order.items or ()), ratio,
                float(bool(order.shipping_address_id and order.billing_address_id
                           and order.shipping_address_id != order.billing_address_id)),
                float(not order.user_id))
            signals = order.signals or {}
            for k, name in enumerate(self.signals):
                value = signals.get(name)
                if value is not None and math.isfinite(value):
                    out[r, col + len(ORDER_FEATURES) + k] = value
        return out
