"""The baseline the models replace: a rules engine of the kind shops write, over the same
velocity counters and order fields. An order that trips any rule goes to review."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hanzo.server.surfaces.fraud_inputs import signal_feature


@dataclass(frozen=True)
class Rule:
    feature: str
    op: str  # ">=" or "<="
    threshold: float
    text: str
    # and every one of these (feature, op, threshold) too; "missing" as op: the value is unknown
    also: tuple[tuple[str, str, float], ...] = ()


def shop_rules(amount_threshold: float) -> tuple[Rule, ...]:
    """Velocity, amount, new account, processor checks and a blocklist. `amount_threshold`:
    the shop's "large order" line (the training orders' 99th percentile)."""
    return (
        Rule("user_orders_1h", ">=", 3, "3+ orders from the account in an hour"),
        Rule("card_orders_1h", ">=", 3, "3+ orders on the card in an hour"),
        Rule("user_distinct_cards_24h", ">=", 3, "3+ cards on the account in a day"),
        Rule("device_distinct_users_30d", ">=", 3, "3+ accounts on the device in 30 days"),
        Rule("address_distinct_users_30d", ">=", 3, "3+ accounts shipping to the address in 30 days"),
        Rule("order_amount", ">=", amount_threshold, "a large order"),
        Rule(signal_feature("cvv_match"), "<=", 0.0, "CVV mismatch"),
        Rule(signal_feature("avs_match"), "<=", 0.0, "address verification failed"),
        # Travellers order from far away on their own phones: only a far IP on a new device.
        Rule(signal_feature("ip_distance_km"), ">=", 1000.0, "IP more than 1,000 km away, on a device seen today",
             also=(("device_age", "<=", 86_400.0),)),
        # The blocklist: the order's card, device, shipping address or email was in an order
        # charged back.
        Rule("network_blocklisted", ">=", 1, "a blocklisted card, device, address or email"),
    )


def rules_flag(x: np.ndarray, names: tuple[str, ...], rules: tuple[Rule, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(flagged bool [n], rules tripped int [n]); a rule on a value not known does not trip."""
    tripped = np.zeros(len(x), np.int64)
    for rule in rules:
        conditions = ((rule.feature, rule.op, rule.threshold),) + rule.also
        if any(feature not in names for feature, _, _ in conditions):
            continue
        hit = np.ones(len(x), bool)
        for feature, op, threshold in conditions:
            value = x[:, names.index(feature)]
            with np.errstate(invalid="ignore"):
                if op == "missing":
                    hit &= np.isnan(value)
                else:
                    hit &= value >= threshold if op == ">=" else value <= threshold
        tripped += hit
    return tripped > 0, tripped
