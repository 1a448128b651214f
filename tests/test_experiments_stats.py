"""The experiments' statistics: the arm split is stable and keeps its shares, the delta-method
ratio sums match a direct computation, the mixture SPRT's p-value only falls and finds a real
difference, a sample ratio mismatch is caught, and the chi-square tail matches known values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hanzo.server.experiments.arms import CANDIDATE, HOLDOUT, PRODUCTION, Split, bucket
from hanzo.server.experiments.sequential import (AlwaysValidTest, RatioArm, _chi2_sf, _z_two_sided, compare,
                                                 fixed_z_significant, mixture_likelihood_ratio, sample_ratio_p)


def test_the_split_is_stable_keeps_its_shares_and_changes_with_the_salt():
    split = Split(candidate=0.2, holdout=0.1)
    units = [f"user-{i}" for i in range(20_000)]
    arms = [split.arm("exp-1", u) for u in units]
    assert arms == [split.arm("exp-1", u) for u in units]  # the same shopper, the same arm, every call
    shares = {arm: arms.count(arm) / len(arms) for arm in (PRODUCTION, CANDIDATE, HOLDOUT)}
    assert shares[CANDIDATE] == pytest.approx(0.2, abs=0.01) and shares[HOLDOUT] == pytest.approx(0.1, abs=0.01)
    again = [split.arm("exp-2", u) for u in units]
    moved = sum(a != b for a, b in zip(arms, again)) / len(units)
    assert 0.3 < moved < 0.6  # a new experiment splits afresh (independent: 1 - 0.7^2 - 0.2^2 - 0.1^2 = 0.46)
    assert 0 <= bucket("s", "") < 1
    with pytest.raises(ValueError, match="sum to at most 1"):
        Split(candidate=0.7, holdout=0.5)


def test_the_ratio_arm_matches_the_delta_method_computed_directly():
    rng = np.random.default_rng(3)
    arm = RatioArm()
    totals: dict[str, list[float]] = {}
    for _ in range(3000):
        unit = f"u{rng.integers(400)}"
        clicks = float(rng.poisson(0.3))
        arm.add(unit, clicks, 1.0)
        c, n = totals.setdefault(unit, [0.0, 0.0])
        totals[unit] = [c + clicks, n + 1]
    c = np.array([t[0] for t in totals.values()])
    n = np.array([t[1] for t in totals.values()])
    r = c.sum() / n.sum()
    expected = np.mean((c - r * n) ** 2) / (len(c) * n.mean() ** 2)
    assert arm.n == len(totals) and arm.ratio == pytest.approx(r)
    assert arm.variance == pytest.approx(expected, rel=1e-9)


def _arms(rate_production: float, rate_candidate: float, shoppers: int, seed: int) -> tuple[RatioArm, RatioArm]:
    rng = np.random.default_rng(seed)
    production, candidate = RatioArm(), RatioArm()
    for i in range(shoppers):
        for arm, rate in ((production, rate_production), (candidate, rate_candidate)):
            for _ in range(3):
                arm.add(f"s{i}", float(rng.random() < rate), 1.0)
    return production, candidate


def test_the_always_valid_p_value_only_falls_and_finds_a_real_difference():
    test = AlwaysValidTest(alpha=0.05, tau_relative=0.1)
    production, candidate = _arms(0.10, 0.13, 4000, seed=1)
    comparison = compare(production, candidate)
    assert comparison.difference == pytest.approx(0.03, abs=0.01) and comparison.z > 3
    assert test.look(comparison, production.ratio) < 0.05 and test.significant
    low = test.p
    assert test.look(compare(*_arms(0.10, 0.10, 50, seed=2)), 0.1) == low  # never rises again
    assert test.look(None, 0.1) == low and test.looks == 2


def test_nothing_differs_rarely_significant_and_the_statistic_is_the_closed_form():
    hits = 0
    for seed in range(40):
        test = AlwaysValidTest()
        for shoppers in (200, 400, 800):
            test.look(compare(*_arms(0.1, 0.1, shoppers, seed * 10 + shoppers)), 0.1)
        hits += test.significant
    assert hits <= 6  # at most alpha in expectation (a binomial's tail beyond 6 of 40 is under 2%)
    d, v, tau = 0.01, 1e-4, 0.02
    assert mixture_likelihood_ratio(d, v, tau) == pytest.approx(
        math.sqrt(v / (v + tau**2)) * math.exp(d * d * tau**2 / (2 * v * (v + tau**2))))
    assert mixture_likelihood_ratio(10.0, 1e-9, 1.0) < math.inf  # a decisive lead does not overflow


def test_the_fixed_test_the_sample_ratio_check_and_the_tails():
    assert _z_two_sided(0.05) == pytest.approx(1.959964, abs=1e-5)
    production, candidate = _arms(0.10, 0.13, 4000, seed=1)
    assert fixed_z_significant(compare(production, candidate)) and not fixed_z_significant(None)
    assert sample_ratio_p([5000, 5000], [0.5, 0.5]) == pytest.approx(1.0)
    assert sample_ratio_p([5200, 4800], [0.5, 0.5]) < 0.001  # 4 standard deviations off the split
    assert sample_ratio_p([7000, 2000, 1000], [0.7, 0.2, 0.1]) == pytest.approx(1.0)
    assert _chi2_sf(3.841459, 1) == pytest.approx(0.05, abs=1e-5)
    assert _chi2_sf(5.991465, 2) == pytest.approx(0.05, abs=1e-5)
    assert _chi2_sf(7.814728, 3) == pytest.approx(0.05, abs=1e-5)
    assert _chi2_sf(0.0, 3) == pytest.approx(1.0)


def test_the_experiment_config_splits_by_merchant_and_only_where_there_is_a_candidate():
    from hanzo.server.experiments.config import ExperimentConfig

    config = ExperimentConfig(candidate_share=0.5, holdout_share=0.2)
    users = [f"u{i}" for i in range(2000)]
    with_candidate = [config.arm("recommend", "shop-a", u, 3) for u in users]
    assert 0.45 < with_candidate.count(CANDIDATE) / len(users) < 0.55
    assert 0.17 < with_candidate.count(HOLDOUT) / len(users) < 0.23
    without = [config.arm("recommend", "shop-a", u, None) for u in users]
    assert CANDIDATE not in without  # no candidate loaded: its share gets production
    assert [a == HOLDOUT for a in without] == [a == HOLDOUT for a in with_candidate]  # the holdout stays put
    other_shop = [config.arm("recommend", "shop-b", u, 3) for u in users]
    assert sum(a != b for a, b in zip(with_candidate, other_shop)) > 500  # two shops split independently
    next_candidate = [config.arm("recommend", "shop-a", u, 4) for u in users]
    assert sum(a != b for a, b in zip(with_candidate, next_candidate)) > 300  # a new candidate, a new draw
    assert config.arm("recommend", "shop-a", "", 3) == PRODUCTION  # nobody to split by
    assert ExperimentConfig().arm("recommend", "", "u1", 3) == PRODUCTION  # off by default
    with pytest.raises(ValueError, match="salt"):
        ExperimentConfig(salt="")
