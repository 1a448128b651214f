"""Fraud decisions from a merchant's thresholds, the [fraud] config refusing what it cannot
mean, and reasons in plain words."""
from __future__ import annotations

import math

import pytest

from hanzo.server.app.config import ServerConfig
from hanzo.server.surfaces.fraud import FraudConfig
from hanzo.server.surfaces.fraud_reasons import reason_text


def test_thresholds_and_the_action_above_review_per_merchant():
    config = FraudConfig(merchants={"shop-9": {"above_review": "DECLINE", "review_at": 0.5}})
    default, strict = config.policy("anyone"), config.policy("shop-9")
    assert [default.decide(s) for s in (0.0, 0.29, 0.3, 0.69, 0.7, 1.0)] == \
        ["APPROVE", "APPROVE", "VERIFY", "VERIFY", "REVIEW", "REVIEW"]
    assert [strict.decide(s) for s in (0.29, 0.3, 0.5, 0.9)] == ["APPROVE", "VERIFY", "DECLINE", "DECLINE"]


@pytest.mark.parametrize("options, words", [
    ({"above_review": "BLOCK"}, "above_review"),
    ({"verify_at": 0.8, "review_at": 0.7}, "verify_at <= review_at"),
    ({"merchants": {"m": {"review_at": 0.2}}}, "fraud.merchants.m"),
    ({"merchants": {"m": {"threshold": 0.2}}}, "unknown options ['threshold']"),
    ({"record_orders": "later"}, "record_orders"),
])
def test_config_refuses_by_name(options, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        FraudConfig(**options)


def test_toml_fraud_table(tmp_path):
    path = tmp_path / "hanzo.toml"
    path.write_text('[fraud]\nverify_at = 0.2\n[fraud.merchants.acme]\nabove_review = "DECLINE"\n')
    config = ServerConfig.from_toml(path)
    assert config.fraud.policy("acme").decide(0.9) == "DECLINE" and config.fraud.policy("x").decide(0.25) == "VERIFY"


def test_reasons_read_as_words():
    assert reason_text("user_distinct_cards_24h", 4.0) == "4 cards used by this account in the last 24 hours"
    assert reason_text("card_orders_1h", 1.0) == "1 order on this card in the last hour"
    assert reason_text("session_since_page_view", 3.2) == "checkout filled in 3 seconds"
    assert reason_text("signal_cvv_match", 0.0) == "the card's CVV did not match"
    assert reason_text("signal_V14", -5.5) == "processor signal V14 = -5.5"
    assert reason_text("device_age", math.nan) == "a device never seen before"
    assert reason_text("network_chargebacks", 2.0) == "linked to 2 charged-back orders"


def test_an_order_is_recorded_per_merchant():
    from hanzo.server.surfaces.fraud_inputs import FraudOrder

    order = FraudOrder(order_id="1001", timestamp=1, amount=5.0)
    assert order.event()["event_id"] == "order-1001"
    assert order.event("shop-a")["event_id"] != order.event("shop-b")["event_id"]
    assert order.event("shop-a")["payload"]["order_id"] == "1001"
