"""Drift against a training reference: the same distribution reads as stable, a shifted input
(and only it) as drift, a missing input as drift, on PSI and KS; references round-trip."""
from __future__ import annotations

import numpy as np
import pytest

from hanzo.server.experiments.drift import DriftWindow, Reference, ks, psi


def _reference(rng) -> Reference:
    x = np.column_stack([rng.normal(0, 1, 20_000), rng.exponential(2.0, 20_000), rng.integers(0, 3, 20_000)])
    return Reference.from_rows(["amount_z", "velocity", "device_count"], x, rng.random(20_000))


def test_stable_inputs_read_stable_and_a_shifted_one_reads_as_drift(tmp_path):
    rng = np.random.default_rng(7)
    reference = _reference(rng)
    reference.save(tmp_path / "reference.json")
    loaded = Reference.load(tmp_path / "reference.json")
    assert loaded.names == ("amount_z", "velocity", "device_count", "score")
    assert np.allclose(loaded.shares, reference.shares, atol=1e-6)
    assert Reference.load(tmp_path / "absent.json") is None

    window = DriftWindow(loaded, window=2000)
    for _ in range(99):
        window.add(np.array([rng.normal(), rng.exponential(2.0), rng.integers(0, 3)]), rng.random())
    assert window.measure() is None  # too few rows to say
    for _ in range(3000):  # the window keeps the last 2000
        window.add(np.array([rng.normal(), rng.exponential(2.0), rng.integers(0, 3)]), rng.random())
    stable = window.measure()
    assert all(p < 0.05 and k < 0.05 for p, k in stable.values()), stable
    for _ in range(2000):  # amounts a standard deviation up; the rest as before
        window.add(np.array([rng.normal(1.0, 1.0), rng.exponential(2.0), rng.integers(0, 3)]), rng.random())
    moved = window.measure()
    assert moved["amount_z"][0] > 0.25 and moved["amount_z"][1] > 0.3, moved
    assert all(moved[name][0] < 0.05 for name in ("velocity", "device_count", "score")), moved
    for _ in range(2000):  # device counts stop arriving
        window.add(np.array([rng.normal(), rng.exponential(2.0), np.nan]), rng.random())
    assert window.measure()["device_count"][0] > 1.0


def test_psi_and_ks_of_known_shares():
    same = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(same, same) == 0.0 and ks(same, same) == 0.0
    assert psi(same, np.array([0.5, 0.5, 0.0, 0.0])) == pytest.approx(
        2 * 0.25 * np.log(2) + 2 * (1e-4 - 0.25) * np.log(1e-4 / 0.25), rel=1e-6)
    assert ks(same, np.array([0.5, 0.5, 0.0, 0.0])) == pytest.approx(0.5)


def test_values_past_the_training_range_are_a_bin_of_their_own():
    rng = np.random.default_rng(3)
    items = rng.integers(1, 6, 20_000).astype(float)  # baskets of 1 to 5 lines in training
    reference = Reference.from_rows(["order_items"], items[:, None], rng.random(20_000))
    window = DriftWindow(reference, window=2000)
    for i in range(2000):  # 5% of orders now fill baskets of 12 lines: never seen
        window.add(np.array([12.0 if i % 20 == 0 else float(rng.integers(1, 6))]), rng.random())
    assert window.measure()["order_items"][0] > 0.25


def test_fraud_scores_are_settled_by_the_chargebacks_that_come_later():
    from hanzo.server.experiments.labels import LabelJoin

    labels = LabelJoin(max_orders=3)
    for order, decision, score in (("m|o1", "APPROVE", 0.1), ("m|o2", "REVIEW", 0.8), ("m|o3", "REVIEW", 0.9)):
        labels.record(order, "1", decision, score)
    labels.record("m|o2", "1", "REVIEW", 0.8)  # a retried order is one order
    chargeback = lambda order: {"event_type": "chargeback", "payload": {"order_id": order}}  # noqa: E731
    labels.observe([chargeback("m|o2"), chargeback("m|o2"), chargeback("other|o1"),
                    {"event_type": "purchase", "payload": {"order_id": "m|o1"}}])
    assert labels.scored == {("1", "APPROVE"): 1, ("1", "REVIEW"): 2}
    assert labels.charged_back == {("1", "REVIEW"): 1} and labels.late == 2  # once; another shop's order
    assert labels.score_sum["1"] == pytest.approx(1.8)
    labels.record("m|o4", "2", "APPROVE", 0.2)  # settled orders leave; past three remembered,
    labels.record("m|o5", "2", "APPROVE", 0.2)  # the oldest (o1) is forgotten: its chargeback comes late
    labels.observe([chargeback("m|o1")])
    assert labels.late == 3 and labels.charged_back[("1", "APPROVE")] == 0


def test_a_rankers_rows_wrap_around_the_window_as_single_rows_would():
    rng = np.random.default_rng(3)
    reference = _reference(rng)
    one, many = DriftWindow(reference, window=250), DriftWindow(reference, window=250)
    for size in (7, 100, 240, 3, 600):  # lists shorter than, around and longer than the window
        x, scores = rng.normal(size=(size, 3)), rng.random(size)
        many.add_rows(x, scores)
        for row, score in zip(x, scores):
            one.add(row, score)
    assert one.seen == many.seen
    assert np.array_equal(one.rows, many.rows)
