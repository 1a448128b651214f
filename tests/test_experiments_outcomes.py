"""Outcomes joined to the lists that led to them (shown -> clicked -> bought within the window,
per version and arm, per shopper, in bounded memory), and the gate's verdicts on them."""
from __future__ import annotations

import numpy as np
import pytest

from hanzo.server.experiments.gate import Gate, GateConfig
from hanzo.server.experiments.outcomes import ArmOutcomes, OutcomeJoin

HOUR = 3_600_000


def shown(request_id: str, user: str, products: list[str], version: str = "recommend:1", arm: str = "production"):
    return {"event_type": "recommendation_shown", "user_id": user, "session_id": "s", "timestamp": 0,
            "payload": {"request_id": request_id, "product_ids": products, "model_version": version, "arm": arm}}


def clicked(request_id: str, user: str, product: str, at: int, as_view: bool = False):
    if as_view:  # a storefront's tracking link: the list's request id in the view's context
        return {"event_type": "product_view", "user_id": user, "timestamp": at, "payload": {"product_id": product},
                "context": {"request_id": request_id, "source": "recommend"}}
    return {"event_type": "recommendation_clicked", "user_id": user, "timestamp": at,
            "payload": {"product_id": product, "request_id": request_id}}


def bought(user: str, product: str, at: int, price: float = 10.0, quantity: float = 1.0):
    return {"event_type": "purchase", "user_id": user, "timestamp": at,
            "payload": {"product_id": product, "price": price, "quantity": quantity}}


def test_a_list_its_clicks_and_the_purchases_through_them_are_joined():
    join = OutcomeJoin(window_ms=24 * HOUR)
    join.observe([shown("r1", "u1", ["a", "b", "c"]), shown("r2", "u2", ["a", "b"], "recommend:2", "candidate")])
    join.observe([clicked("r1", "u1", "a", 1000), clicked("r1", "u1", "a", 2000),  # the same product: once
                  clicked("r1", "u1", "z", 2000),  # not in the list
                  clicked("r1", "u1", "b", 3000, as_view=True),
                  clicked("r2", "u2", "b", 1000), clicked("gone", "u2", "a", 1000)])  # a list never seen
    join.observe([bought("u1", "a", 5000, price=12.5, quantity=2), bought("u1", "a", 6000),  # once per click
                  bought("u1", "b", 3000 + 25 * HOUR),  # after the window
                  bought("u1", "c", 7000),  # never clicked
                  bought("u2", "b", 2000, price=4.0), {"event_type": "purchase", "payload": None}])  # malformed
    report = join.report()
    assert report["recommend:1/production"] == {
        "lists": 1, "shoppers": 1, "clicks": 2, "purchases": 1, "revenue": 25.0, "ctr": 2.0, "conversion": 1.0,
        "revenue_per_list": 25.0}
    assert report["recommend:2/candidate"]["clicks"] == 1 and report["recommend:2/candidate"]["revenue"] == 4.0
    assert join.late == 1


def test_memory_is_bounded_and_an_outcome_of_a_forgotten_list_is_late():
    join = OutcomeJoin(max_lists=2, max_clicks=2)
    join.observe([shown(f"r{i}", f"u{i}", ["a"]) for i in range(3)])
    join.observe([clicked("r0", "u0", "a", 1), clicked("r2", "u2", "a", 1)])
    assert join.late == 1 and join.report()["recommend:1/production"]["clicks"] == 1
    assert len(join._lists) == 2


def _outcomes(rate: float, shoppers: int, seed: int, lists_each: int = 4) -> ArmOutcomes:
    rng = np.random.default_rng(seed)
    out = ArmOutcomes()
    for s in range(shoppers):
        for _ in range(lists_each):
            out.clicks.add(f"s{s}", float(rng.random() < rate), 1.0)
    return out


def test_the_gate_promotes_stops_waits_and_rolls_back():
    config = GateConfig(min_shoppers=200)
    better = Gate(config, (0.5, 0.5))
    assert better.judge(_outcomes(0.10, 100, 1), _outcomes(0.14, 100, 2)).action == "wait"  # too few shoppers
    verdict = better.judge(_outcomes(0.10, 3000, 1), _outcomes(0.14, 3000, 2))
    assert verdict.action == "promote" and verdict.figures["relative_difference"] > 0.2, verdict
    slow = Gate(config, (0.5, 0.5)).judge(_outcomes(0.10, 3000, 1), _outcomes(0.14, 3000, 2), (2.0, 2.5))
    assert slow.action == "wait" and "p99" in slow.reason
    worse = Gate(config, (0.5, 0.5)).judge(_outcomes(0.14, 3000, 1), _outcomes(0.10, 3000, 2))
    assert worse.action == "stop"
    mismatch = Gate(config, (0.9, 0.1)).judge(_outcomes(0.1, 3000, 1), _outcomes(0.1, 3000, 2))
    assert mismatch.action == "stop" and "sample ratio mismatch" in mismatch.reason
    same = Gate(config, (0.5, 0.5)).judge(_outcomes(0.1, 3000, 1), _outcomes(0.1, 3000, 2))
    assert same.action == "wait"
    watch = Gate(config, (0.5, 0.5), watching=True)
    assert watch.judge(_outcomes(0.14, 3000, 1), _outcomes(0.10, 3000, 2)).action == "rollback"
    with pytest.raises(ValueError, match="metric"):
        GateConfig(metric="ctr")
