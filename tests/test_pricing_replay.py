"""The closed-loop pricing replay on a small simulated shop: every policy runs from the same
copied state, and the model's prices keep the rules day after day (margin floor, at most
max_change from the day before)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hanzo.server.pricing.optimize import PriceRules
from hanzo.training.pricing.replay import ModelPolicy, _fit, _outcome, _run, replay
from hanzo.training.simulator import SimulationConfig
from hanzo.training.simulator.world import DAY_MS, Simulation


def test_model_prices_keep_the_rules_in_the_loop():
    config = SimulationConfig(seed=2, users=300, products=40, days=20, price_experiment_rate=0.2)
    base = Simulation(config)
    for day in range(14):
        base._day(day)
    rules = PriceRules(min_margin=0.1, max_change=0.15)
    policy = ModelPolicy(base, _fit(base, 5.0), rules, 7.0, refit_days=3, pooling=5.0, extrapolation=0.5,
                         half_life_days=21.0)
    sim = _run(base, policy, 14, 6)
    assert policy.quoted > 100
    since = sim.start_ms + 14 * DAY_MS
    cost = dict(zip(sim.catalog.ids, sim.catalog.cost))
    last = {pid: float(p) for pid, p in zip(sim.catalog.ids, base.market.price)}
    steps = jumps = 0
    for event in sorted((e for e in sim.events if e["event_type"] == "price_change" and e["timestamp"] >= since),
                        key=lambda e: e["timestamp"]):
        product, price = event["payload"]["product_id"], event["payload"]["price"]
        floor = 1.1 * cost[product]
        assert price >= round(floor, 2) - 0.01
        if last[product] * 1.15 < floor:  # the margin floor outranks the step limit: straight to the floor
            assert price == pytest.approx(math.ceil(floor * 100 - 1e-9) / 100, abs=0.006)
            jumps += 1
        else:
            assert abs(price / last[product] - 1) <= 0.15 + 0.01 / last[product] + 1e-9
            steps += 1
        last[product] = price
    assert steps > 50  # the step limit was exercised, not only the floor
    assert _outcome(sim, 14)["profit"] > 0
    # the copy is the policy's own: the base shop stayed at day 14
    assert max(e["timestamp"] for e in base.events) < since


def test_replay_reports_every_policy():
    report = replay(SimulationConfig(seed=1, users=200, products=30, price_experiment_rate=0.2), 10, 3, [0.5],
                    PriceRules(), log=lambda m: None)
    assert {"status_quo", "cost_plus_0.50", "model"} <= set(report["results"])
    assert np.isfinite(report["model_vs_status_quo"]) and "model_vs_best_cost_plus" in report
