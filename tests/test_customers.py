"""The customer-base models on CDNOW's first 39 weeks, against the `lifetimes` package run the
same way: each customer's summary (customer-days as purchases) identical, the BG/NBD and
Gamma-Gamma maximum-likelihood fits equal to three decimals, and the BG/NBD's readings (the
chance a customer is alive, the purchases expected) equal to lifetimes' own."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from helpers import SHARED_DATA, shared_data

from hanzo.server.customers.bgnbd import BGNBD, fit_bgnbd, hyp2f1
from hanzo.server.customers.gamma_gamma import fit_gamma_gamma
from hanzo.server.customers.rfm import summarize

CDNOW = SHARED_DATA / "cdnow" / "events.jsonl.gz"
END = int(np.datetime64("1997-09-30", "D").astype(np.int64))


@pytest.fixture(scope="module")
def cdnow():
    rows = [json.loads(line) for line in gzip.open(CDNOW)]
    users = np.array([r["user_id"] for r in rows], object)
    days = np.array([np.datetime64(r["timestamp"][:10], "D").astype(np.int64) for r in rows])
    spend = np.array([r["payload"]["amount"] for r in rows])
    return users, days, spend


def lifetimes_summary(users, days, spend):
    import pandas as pd
    from lifetimes.utils import summary_data_from_transaction_data

    frame = pd.DataFrame({"id": users, "date": pd.to_datetime(days, unit="D"), "amount": spend})
    return summary_data_from_transaction_data(frame, "id", "date", "amount", observation_period_end="1997-09-30",
                                              freq="D")


@shared_data("cdnow", "events.jsonl.gz")
def test_the_models_fit_cdnow_as_lifetimes_does(cdnow):
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    ours = summarize(*cdnow, END)
    theirs = lifetimes_summary(*cdnow).loc[ours.user_ids]
    assert len(ours) == 23570
    for mine, column in ((ours.frequency, "frequency"), (ours.recency, "recency"), (ours.age, "T"),
                         (ours.monetary, "monetary_value")):
        np.testing.assert_allclose(mine, theirs[column].to_numpy(), rtol=1e-9, err_msg=column)
    model = fit_bgnbd(ours)
    reference = BetaGeoFitter().fit(theirs["frequency"], theirs["recency"], theirs["T"])
    for name in ("r", "alpha", "a", "b"):
        assert getattr(model, name) == pytest.approx(reference.params_[name], abs=1e-3), name
    repeat = theirs[(theirs["frequency"] > 0) & (theirs["monetary_value"] > 0)]
    spend = fit_gamma_gamma(ours)
    spend_reference = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    for name in ("p", "q", "v"):
        assert getattr(spend, name) == pytest.approx(spend_reference.params_[name], abs=1e-3), name
    # the readings, from the same parameters, equal lifetimes' own
    fitted = BGNBD(*(reference.params_[n] for n in ("r", "alpha", "a", "b")))
    sample = ours.take(np.arange(0, len(ours), 97))
    rows = theirs.iloc[np.arange(0, len(ours), 97)]
    np.testing.assert_allclose(fitted.p_alive(sample), reference.conditional_probability_alive(
        rows["frequency"], rows["recency"], rows["T"]), rtol=1e-6)
    np.testing.assert_allclose(fitted.expected_purchases(sample, 273), reference.conditional_expected_number_of_purchases_up_to_time(
        273, rows["frequency"], rows["recency"], rows["T"]), rtol=1e-6)


def test_the_hypergeometric_series_is_scipys():
    from scipy.special import hyp2f1 as reference

    a, b, c = np.array([0.3, 5.2, 12.0]), np.array([2.1, 7.5, 30.0]), np.array([2.8, 12.0, 40.0])
    for z in (0.0, 0.2, 0.6, 0.9):
        np.testing.assert_allclose(hyp2f1(a, b, c, z), reference(a, b, c, z), rtol=1e-9)


def test_a_customer_summary_counts_days_not_orders():
    users = np.array(["a", "a", "a", "b", "a"], object)
    days = np.array([10, 10, 15, 12, 40])  # a's second order on day 10 is the same purchase day; day 40 is after the end
    spend = np.array([5.0, 7.0, 3.0, 9.0, 100.0])
    s = summarize(users, days, spend, end_day=30)
    assert list(s.user_ids) == ["a", "b"]
    assert s.frequency.tolist() == [1, 0] and s.recency.tolist() == [5, 0] and s.age.tolist() == [20, 18]
    assert s.monetary.tolist() == [3.0, 0.0] and s.first_spend.tolist() == [12.0, 9.0]
    p = BGNBD(0.25, 33.5, 0.72, 2.16)
    assert p.p_alive(s)[1] == 1.0 and 0 < p.p_alive(s)[0] < 1
    assert (p.p_any_purchase(s, 90) < 1).all() and (p.expected_purchases(s, 90) > 0).all()


def test_later_purchases_are_counted_per_day_for_the_customers_summarized():
    from hanzo.training.customers.outcomes import outcomes

    users = np.array(["a", "a", "a", "b", "c"], object)
    days = np.array([1, 5, 5, 6, 7])
    spend = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    summary = summarize(users, days, spend, end_day=2)  # only a is known by day 2
    bought, spent = outcomes(users, days, spend, summary, 2, 10)
    assert list(summary.user_ids) == ["a"] and bought.tolist() == [1.0] and spent.tolist() == [5.0]


@shared_data("cdnow", "events.jsonl.gz")
def test_score_customers_writes_the_nightly_batch(tmp_path):
    import csv
    import subprocess
    import sys

    out = tmp_path / "scores.csv"
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "score-customers", "--events", str(CDNOW),
                          "--as-of", "1997-09-30", "--horizon-days", "273", "--out", str(out),
                          "--save-model", str(tmp_path / "model")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "BG/NBD r=0.2516" in run.stderr and "23570 customers" in run.stderr
    assert "learned model: trees on the 136 days before 1997-09-30" in run.stderr
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["model.json", "purchases.npz", "spend.npz"]
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 23570 and list(rows[0]) == ["user_id", "p_buy_again", "expected_purchases",
                                                    "expected_spend", "risk_band", "reasons"]
    p = np.array([float(r["p_buy_again"]) for r in rows])
    assert ((0 <= p) & (p <= 1)).all() and {r["risk_band"] for r in rows} == {"high", "medium", "low"}
    assert all(r["reasons"] for r in rows)
    assert any("raises expected purchases" in r["reasons"] for r in rows)
    bad = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "score-customers", "--events", str(CDNOW),
                          "--as-of", "30/09/1997", "--horizon-days", "273", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--as-of must be a date YYYY-MM-DD" in bad.stderr
