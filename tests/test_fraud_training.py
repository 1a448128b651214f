"""Fraud training on a small simulated shop: rows read before their order is applied, the blended
ONNX graph equal to the training libraries' predictions, and a report comparing every system
with the rules engine at the same review rate."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("xgboost")
pytest.importorskip("onnxmltools")

import onnxruntime as ort  # noqa: E402

from hanzo.server.surfaces.fraud_inputs import FraudInputs  # noqa: E402
from hanzo.training.fraud import pipeline  # noqa: E402
from hanzo.training.fraud.boosting import fit_xgb, predict_xgb  # noqa: E402
from hanzo.training.fraud.dataset import build_rows, signal_names, split_by_time  # noqa: E402
from hanzo.training.fraud.export import ensemble_onnx  # noqa: E402
from hanzo.training.fraud.metrics import at_review, average_precision, flag_top  # noqa: E402
from hanzo.training.fraud.mlp import fit_mlp, predict  # noqa: E402
from hanzo.training.simulator import SimulationConfig, simulate  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fraudworld")
    sim = simulate(SimulationConfig(seed=5, users=400, products=120, days=40, fraud_level=6), root)
    records = pipeline.load_sorted(root / "events.jsonl.gz")
    inputs = FraudInputs(signal_names(records))
    return root, sim, records, build_rows(records, inputs)


def test_rows_count_only_the_orders_before_each_one(world):
    _, sim, records, rows = world
    orders = [r for r in records if r["event_type"] == "order"]
    assert len(rows) == len(orders) and rows.y.sum() > 10
    card_orders = rows.x[:, rows.names.index("card_orders_1h")]
    seen: dict[str, list[int]] = {}
    checked = 0
    for i, order in enumerate(rows.orders):
        earlier = seen.setdefault(order.card_id, [])
        if not earlier:
            assert np.isnan(card_orders[i]), "a card's first order knows no card history"
        elif order.timestamp - earlier[-1] < 30 * 60_000 and order.timestamp // 300_000 > earlier[-1] // 300_000 - 12:
            assert card_orders[i] >= 1
            checked += 1
        earlier.append(order.timestamp)
    assert checked > 0
    # Chargebacks label exactly the orders they name.
    assert set(np.asarray(rows.order_ids)[rows.y == 1]) == set(sim.truth.chargebacks)


def test_the_served_graph_equals_the_training_libraries(world):
    _, _, _, rows = world
    train, validation, test = split_by_time(rows)
    booster, _ = fit_xgb(train.x, train.y, validation.x, validation.y, rounds=80, log=lambda *_: None)
    mlp, _ = fit_mlp(train.x, train.y, validation.x, validation.y, epochs=4, log=lambda *_: None)
    alpha = 0.35
    model = ensemble_onnx(booster, mlp, alpha, len(rows.names))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    score, xgb, net = session.run(["score", "xgb", "mlp"], {"features": test.x})
    np.testing.assert_allclose(xgb[:, 0], predict_xgb(booster, test.x), atol=1e-5)
    np.testing.assert_allclose(net[:, 0], predict(mlp, test.x), atol=1e-5)
    np.testing.assert_allclose(score[:, 0], alpha * xgb[:, 0] + (1 - alpha) * net[:, 0], atol=1e-6)


def test_metrics_by_hand():
    y = np.array([1, 0, 1, 0, 0], float)
    score = np.array([0.9, 0.8, 0.7, 0.1, 0.7])
    # ranks of the frauds: 1 and 4 (the fraud tied with a good order goes after it)
    assert average_precision(y, score) == pytest.approx((1 / 1 + 2 / 4) / 2)
    flagged = flag_top(score, 0.4)
    assert flagged.tolist() == [True, True, False, False, False]
    review = at_review(y, np.array([10.0, 5, 30, 1, 1]), flagged)
    assert review["fraud_amount_caught"] == 10 and review["fraud_loss"] == 30 and review["false_positives"] == 1


def test_train_fraud_writes_a_version_and_a_report(world, tmp_path):
    root, _, _, _ = world
    report = pipeline.train_fraud(root / "events.jsonl.gz", tmp_path / "repo", seed=0, log=lambda *_: None)
    version = tmp_path / "repo" / "fraud" / "1"
    assert {p.name for p in version.iterdir()} == {"model.onnx", "trees.npz", "inputs.json", "report.json",
                                                   "reference.json"}
    meta = json.loads((version / "inputs.json").read_text())
    # drift's reference: every input and the score, binned on the validation days (server/experiments/drift.py)
    from hanzo.server.experiments.drift import Reference

    reference = Reference.load(version / "reference.json")
    assert list(reference.names) == [*meta["names"], "score"]
    assert reference.shares.shape[0] == len(meta["names"]) + 1 and abs(reference.shares.sum(axis=1) - 1).max() < 1e-4
    assert 0.0 <= meta["alpha"] <= 1.0 and meta["signals"] == ["avs_match", "cvv_match", "ip_distance_km"]
    systems = report["test"]["systems"]
    assert set(systems) == {"rules", "ensemble", "xgboost", "mlp", "logistic_regression"}
    rate = report["test"]["review_rate"]
    for name in ("ensemble", "xgboost", "mlp"):
        assert systems[name]["at_rules_review_rate"]["review_rate"] == pytest.approx(rate, abs=1e-3)
