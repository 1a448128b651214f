"""The fraud ensemble on real card transactions (../shared/data/fraud_ulb: processor signals
only, split by time): its precision-recall area is not worse than a logistic regression's on
the same inputs, and the trees' served graph scores as xgboost does."""
from __future__ import annotations

import json

import pytest
from helpers import SHARED_DATA, shared_data

pytest.importorskip("torch")
pytest.importorskip("xgboost")
pytest.importorskip("onnxmltools")

from hanzo.training.fraud.pipeline import train_fraud  # noqa: E402



@shared_data("fraud_ulb")
def test_ensemble_is_not_worse_than_logistic_regression_on_ulb(tmp_path):
    report = train_fraud(SHARED_DATA / "fraud_ulb" / "events.jsonl.gz", tmp_path / "repo", seed=0, log=lambda *_: None)
    systems = report["test"]["systems"]
    ensemble, logistic = systems["ensemble"], systems["logistic_regression"]
    assert report["split"]["test"] > 200 and report["test"]["systems"]["rules"]["at_rules_review_rate"]["frauds"] > 50
    # not worse: at least the baseline's figure, or inside its bootstrap interval
    assert ensemble["pr_auc"] >= min(logistic["pr_auc"], logistic["pr_auc_ci95"][0]), json.dumps(systems, default=float)
    assert ensemble["pr_auc"] > 0.9
