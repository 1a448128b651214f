"""The win-back simulator and the uplift evaluation on it: the world is the same for a seed, the
coupon goes to a random half, the truth's uplift is what the experiment measures, the events
say what the truth says each arm did, and an uplift model fitted on half the experiment ranks
the other half better than chance."""
from __future__ import annotations

import numpy as np
import pytest

from hanzo.server.customers.purchases import read_purchases
from hanzo.training.customers.uplift import load_experiment, observed_gain, qini, read_truth, run
from hanzo.training.simulator.winback import WinbackConfig, simulate_winback

SMALL = WinbackConfig(shoppers=3000, expected_draws=2)


@pytest.fixture(scope="module")
def big():
    """Enough lapsing shoppers that a tenth of a purchase per offer stands out of the noise."""
    return simulate_winback(WinbackConfig(shoppers=40000, expected_draws=1))


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    world = tmp_path_factory.mktemp("winback")
    simulate_winback(WinbackConfig(shoppers=20000, expected_draws=8)).write(world)
    return run(world, resamples=20, log=lambda *_: None)


def test_the_world_is_the_same_for_a_seed_and_not_for_another():
    a, b = simulate_winback(SMALL), simulate_winback(SMALL)
    for field in ("user", "day", "coupon", "line_order", "product", "quantity", "price"):
        assert np.array_equal(getattr(a.orders, field), getattr(b.orders, field)), field
    assert np.array_equal(a.lapsing, b.lapsing) and np.array_equal(a.treated, b.treated)
    for key in a.truth:
        assert np.array_equal(a.truth[key], b.truth[key]), key
    assert a.events() == b.events()
    other = simulate_winback(WinbackConfig(shoppers=3000, expected_draws=2, seed=SMALL.seed + 1))
    assert len(other.orders.user) != len(a.orders.user) or not np.array_equal(other.orders.day, a.orders.day)


def test_the_coupon_goes_to_a_random_half(big):
    treated, truth = big.treated, big.truth
    assert abs(int(treated.sum()) - int((~treated).sum())) <= 1
    # the hidden traits alike in both arms (within 4 standard errors)
    for trait in ("price_beta", "activity", "lapse_hazard", "active_at_decision", "averse"):
        values = truth[trait].astype(float)
        gap = values[treated].mean() - values[~treated].mean()
        se = np.sqrt(values[treated].var() / treated.sum() + values[~treated].var() / (~treated).sum())
        assert abs(gap) < 4 * se, trait
    # not the first half of the shoppers, nor every other one
    half = len(treated) // 2
    assert 0.45 < treated[:half].mean() < 0.55 and 0.45 < treated[::2].mean() < 0.55
    again = simulate_winback(WinbackConfig(shoppers=40000, expected_draws=1, seed=big.config.seed + 1))
    shared = np.intersect1d(big.lapsing, again.lapsing)
    mine = big.treated[np.searchsorted(big.lapsing, shared)]
    theirs = again.treated[np.searchsorted(again.lapsing, shared)]
    assert 0.4 < np.mean(mine == theirs) < 0.6  # another seed, another draw


def test_the_experiment_measures_the_true_uplift(big):
    truth, treated = big.truth, big.treated
    y1, y0 = truth["purchases_coupon"], truth["purchases_control"]
    true = (y1 - y0).mean()
    measured = y1[treated].mean() - y0[~treated].mean()
    se = np.sqrt(y1[treated].var() / treated.sum() + y0[~treated].var() / (~treated).sum())
    assert true > 0.05  # the coupon does something, so the check below is not 0 against 0
    assert abs(measured - true) < 4 * se
    # the same draws in both worlds: the coupon only adds purchases, or only takes them from the averse
    averse = truth["averse"]
    assert (y1[~averse] >= y0[~averse]).all() and (y1[averse] <= y0[averse]).all()
    assert (y1[averse] < y0[averse]).any() and (y1[~averse] > y0[~averse]).any()
    # every kind of shopper is there
    assert ((y1 > y0).mean() > 0.05 and ((y1 == y0) & (y0 > 0)).mean() > 0.05
            and ((y1 == 0) & (y0 == 0)).mean() > 0.3 and 0 < (y1 < y0).mean() < 0.05)


def test_the_events_say_what_each_arm_did(tmp_path):
    world = tmp_path / "world"
    simulate_winback(SMALL).write(world)
    data = load_experiment(world)
    truth = read_truth(world, data.user_ids)
    t = data.treated
    assert np.array_equal(t, truth["treated"].astype(bool))
    assert np.array_equal(data.purchases, np.where(t, truth["purchases_coupon"], truth["purchases_control"]))
    profit = np.where(t, truth["margin_coupon"] - truth["coupon_cost"], truth["margin_control"])
    assert np.allclose(data.profit, profit, atol=1e-6)
    silent = data.x[:, data.names.index("silent_days")] + 1  # the summary ends the day before the decision
    assert silent.min() >= SMALL.silent_min_days and silent.max() <= SMALL.silent_max_days
    users, days, spend = read_purchases(world / "events.jsonl.gz")
    assert len(users) > 10 * len(data.user_ids) and (spend > 0).all()


def test_the_uplift_model_beats_random_at_the_top_decile_on_the_truth(judged):
    report = judged
    rankings = report["judged"]["rankings"]
    model, chance = rankings["uplift_model"], rankings["random"]
    assert model["top10_incremental_per_1000_truth"]["value"] > chance["top10_incremental_per_1000_truth"]["value"] + 50
    assert model["qini_truth"]["value"] > chance["qini_truth"]["value"]


def test_a_perfect_ranking_has_the_larger_qini(judged):
    report = judged
    rankings = report["judged"]["rankings"]
    assert rankings["oracle"]["qini_truth"]["value"] >= rankings["random"]["qini_truth"]["value"]
    rng = np.random.default_rng(0)
    uplift = rng.poisson(0.2, 2000) - rng.poisson(0.05, 2000)
    perfect, shuffled = np.sort(uplift)[::-1], rng.permutation(uplift)
    assert qini(np.cumsum(perfect)) > qini(np.cumsum(shuffled)) > qini(np.cumsum(perfect[::-1]))
    # observed from an experiment: a treated half that gains the uplift, ranked by it, beats random
    treated = rng.random(2000) < 0.5
    base = rng.poisson(0.3, 2000)
    y = base + treated * np.maximum(uplift, 0)
    order = np.argsort(-np.maximum(uplift, 0), kind="stable")
    assert qini(observed_gain(treated[order], y[order])) > qini(observed_gain(treated, y))
