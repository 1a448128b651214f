"""The learned customer model: lifetime features read point in time, its trees served by our own
kernels exactly as xgboost predicts them, kept and loaded whole, and better than BG/NBD alone on
a CDNOW time split it was not tuned on."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import shared_data
from test_customers import CDNOW, cdnow  # noqa: F401  (the fixture)

from hanzo.server.customers.lifetime import FEATURES, lifetime_features, summary_of
from hanzo.server.customers.model import CustomerModel
from hanzo.server.customers.rfm import summarize

pytest.importorskip("xgboost", reason="the learned model trains with the train extra's xgboost")
from hanzo.training.customers.learned import fit_customer_model  # noqa: E402
from hanzo.training.customers.outcomes import outcomes  # noqa: E402

SPLIT = int(np.datetime64("1997-05-20", "D").astype(np.int64))


def test_lifetime_features_read_one_customer_as_a_person_would():
    users = np.array(["a", "a", "a", "a", "b"], object)
    days = np.array([0, 0, 10, 40, 35])
    spend = np.array([5.0, 5.0, 20.0, 30.0, 7.0])
    features = lifetime_features(users, days, spend, end_day=60)
    a = dict(zip(FEATURES, features.matrix[0]))
    assert a["purchase_days"] == 3 and a["days_since_first"] == 60 and a["days_since_last"] == 20
    assert a["mean_gap_days"] == 20 and a["silence_over_gap"] == 1.0
    # the month holds days 31..60; the quarter six-day buckets 0..10 (days 0..65), so all four
    assert a["purchases_last_30_days"] == 1 and a["purchases_last_90_days"] == 4
    assert a["total_spend"] == 60 and a["mean_day_spend"] == 20 and a["spend_last_90_days"] == 60
    assert a["share_of_spend_in_last_90_days"] == 1.0
    b = dict(zip(FEATURES, features.matrix[1]))
    assert b["purchase_days"] == 1 and np.isnan(b["mean_gap_days"]) and b["days_since_last"] == 25
    # a later purchase changes nothing read at an earlier day
    later = lifetime_features(np.r_[users, ["a"]], np.r_[days, 70], np.r_[spend, 99.0], end_day=60)
    np.testing.assert_array_equal(later.matrix, features.matrix)
    summary = summary_of(features)
    exact = summarize(users, days, spend, 60)
    for name in ("frequency", "recency", "age"):
        np.testing.assert_array_equal(getattr(summary, name), getattr(exact, name))


@shared_data("cdnow", "events.jsonl.gz")
def test_the_served_trees_predict_what_xgboost_predicts(cdnow):  # noqa: F811
    import xgboost

    from hanzo.training.customers.learned import TreeSettings, _boost, _trees

    users, days, spend = cdnow
    model = fit_customer_model(users, days, spend, SPLIT, 133)
    summary, lifetime = summarize(users, days, spend, SPLIT), lifetime_features(users, days, spend, SPLIT)
    X = model.inputs(lifetime)
    start_days, start_money = model.starting_points(lifetime, 133)
    bought, spent = outcomes(users, days, spend, summary, SPLIT, SPLIT + 133)
    for label, start, objective in ((bought, start_days, "count:poisson"), (spent, start_money, "reg:tweedie")):
        booster = _boost(X, label, start, objective, TreeSettings(rounds=30, max_depth=3))
        theirs = booster.predict(xgboost.DMatrix(X, base_margin=start), output_margin=True)
        ours = start + _trees(booster).margin(X)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@shared_data("cdnow", "events.jsonl.gz")
def test_a_kept_model_predicts_the_same_and_explains_itself(cdnow, tmp_path):  # noqa: F811
    users, days, spend = cdnow
    model = fit_customer_model(users, days, spend, SPLIT, 133)
    lifetime = lifetime_features(users, days, spend, SPLIT)
    model.save(tmp_path / "m")
    again = CustomerModel.load(tmp_path / "m")
    first, second = model.predict(lifetime, 133, explain=True), again.predict(lifetime, 133)
    for name in ("p_buy_again", "expected_purchases", "expected_spend"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    # the explanation adds up to the correction the trees made to BG/NBD's starting point
    start, _ = model.starting_points(lifetime, 133)
    correction = np.log(first.expected_purchases) - start
    np.testing.assert_allclose(first.contributions.sum(axis=1) + model.purchases.expected_margin, correction,
                               atol=1e-4)
    (tmp_path / "m" / "model.json").write_text((tmp_path / "m" / "model.json").read_text().replace(
        "total_spend", "lifetime_spend"))
    with pytest.raises(ValueError, match="the model reads"):
        CustomerModel.load(tmp_path / "m")


@shared_data("cdnow", "events.jsonl.gz")
def test_the_learned_model_beats_bgnbd_on_weeks_it_did_not_see(cdnow):  # noqa: F811
    from hanzo.server.customers.bgnbd import fit_bgnbd
    from hanzo.training.customers.evaluate import auc

    users, days, spend = cdnow
    summary, lifetime = summarize(users, days, spend, SPLIT), lifetime_features(users, days, spend, SPLIT)
    bought, spent = outcomes(users, days, spend, summary, SPLIT, SPLIT + 133)
    model = fit_customer_model(users, days, spend, SPLIT, 133)
    ours = model.predict(lifetime, 133)
    base = fit_bgnbd(summary)
    assert model.bgnbd == base
    assert auc(ours.p_buy_again, bought > 0) > auc(base.p_any_purchase(summary, 133), bought > 0)
    assert np.abs(ours.expected_purchases - bought).mean() < np.abs(base.expected_purchases(summary, 133) - bought).mean()
    # the chance of buying again is calibrated on the whole: its mean near the share who did
    assert abs(ours.p_buy_again.mean() - (bought > 0).mean()) < 0.05


@shared_data("cdnow", "events.jsonl.gz")
def test_a_model_caught_mid_rewrite_never_serves_and_the_last_one_does(cdnow, tmp_path):  # noqa: F811
    from hanzo.server.surfaces.reloading import ReloadingFile

    users, days, spend = cdnow
    first = fit_customer_model(users, days, spend, SPLIT, 133)
    first.save(tmp_path / "m")
    served = ReloadingFile(str(tmp_path / "m" / "model.json"), lambda p: CustomerModel.load(p.parent), "model", "")
    served._check_every_s = 0.0
    assert served.current().shape == first.shape
    # a rewrite that left another model's trees beside this model.json: refused, the last one serves
    (tmp_path / "m" / "spend.npz").write_bytes((tmp_path / "m" / "purchases.npz").read_bytes())
    with pytest.raises(ValueError, match="not the one model.json was written with"):
        CustomerModel.load(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text((tmp_path / "m" / "model.json").read_text() + " ")
    assert served.current() is not None and served.current().shape == first.shape
    # a whole new model swapped in is taken up
    second = fit_customer_model(users, days, spend, SPLIT - 14, 133)
    second.save(tmp_path / "m")
    assert served.current().trained_as_of == second.trained_as_of != first.trained_as_of
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folders left behind


def test_score_customers_on_a_shop_too_small_for_the_models_says_why_in_one_line(tmp_path):
    import json as json_module
    import subprocess
    import sys

    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json_module.dumps({
        "event_id": f"e{i}", "event_type": "purchase", "timestamp": f"2024-01-{1 + i % 20:02d}T10:00:00Z",
        "user_id": f"u{i}", "session_id": f"s{i}", "payload": {"amount": 5.0}, "context": {}}) for i in range(40)))
    for model in ("learned", "bgnbd"):
        run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "score-customers", "--events", str(events),
                              "--as-of", "2024-02-01", "--horizon-days", "30", "--out", str(tmp_path / "s.csv"),
                              "--model", model], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert "customers bought again with a spend" in run.stderr or "too few" in run.stderr, run.stderr
