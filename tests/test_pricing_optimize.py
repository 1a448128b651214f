"""The constrained price: the markup optimum when nothing binds, each constraint when it does,
the margin floor winning a conflict, and the choice never worse than the prices around it."""
from __future__ import annotations

import numpy as np
import pytest

from hanzo.server.pricing.optimize import PriceRules, best_price, units_at


def _profit(price, cost=10.0, elasticity=-2.5):
    return (price - cost) * units_at(price, 100.0, 20.0, elasticity)


def test_unconstrained_markup_optimum():
    choice = best_price(10.0, 20.0, 100.0, -2.5, previous_price=16.0, rules=PriceRules(max_change=0.5))
    assert choice.unconstrained == pytest.approx(10.0 * 2.5 / 1.5)
    assert choice.price == pytest.approx(16.67, abs=0.01) and choice.active == [] and choice.violated == []
    grid = np.linspace(11, 30, 400)
    assert choice.expected_profit >= max(_profit(p) for p in grid) - 1e-2


def test_each_constraint_binds():
    consistency = best_price(10.0, 20.0, 100.0, -2.5, previous_price=25.0)  # the optimum is far below
    assert consistency.price == pytest.approx(25.0 * 0.85) and consistency.active == ["price_consistency"]
    parity = best_price(10.0, 20.0, 100.0, -2.5, previous_price=16.0, competitor_prices=[14.0, 15.5],
                        rules=PriceRules(max_change=0.5))
    assert parity.price == 15.5 and parity.active == ["competitor_parity"]
    inelastic = best_price(10.0, 20.0, 100.0, -0.6, previous_price=20.0)  # profit rises with price
    assert inelastic.unconstrained == float("inf") and inelastic.price == pytest.approx(23.0)


def test_the_margin_floor_wins_a_conflict():
    # parity (<= 9) cannot hold with consistency (>= 13.6): as near it as consistency allows
    choice = best_price(10.0, 20.0, 100.0, -2.5, previous_price=16.0, competitor_prices=[9.0],
                        rules=PriceRules(min_margin=0.1))
    assert choice.price == pytest.approx(13.6) and choice.violated == ["competitor_parity"]
    assert choice.active == ["price_consistency"]
    # from a previous price under the floor, the floor wins over consistency too
    low = best_price(10.0, 20.0, 100.0, -2.5, previous_price=8.0, competitor_prices=[9.0])
    assert low.price == 11.0 and low.active == ["margin_floor"]
    assert low.violated == ["price_consistency", "competitor_parity"]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        best_price(10.0, 0.0, 100.0, -2.0, previous_price=10.0)


def test_curved_demand_optimum_and_scarcity():
    # demand growing more elastic with price: the optimum is where p / (p - c) = -elasticity there
    for elasticity, curvature in ((-0.8, -1.5), (-2.5, -0.5), (-1.2, -4.0)):
        choice = best_price(10.0, 20.0, 100.0, elasticity, previous_price=20.0, curvature=curvature,
                            rules=PriceRules(min_margin=0.0, max_change=10.0))
        grid = np.exp(np.linspace(np.log(10.01), np.log(200), 20000))
        profit = [(p - 10.0) * units_at(p, 100.0, 20.0, elasticity, curvature) for p in grid]
        assert choice.unconstrained == pytest.approx(grid[int(np.argmax(profit))], rel=1e-3)
        assert np.isfinite(choice.unconstrained)
    from hanzo.server.pricing.optimize import scarcity_price
    for curvature in (0.0, -0.7, -3.0):
        price = scarcity_price(20.0, 7.0, 20.0, 10.0, -1.3, curvature)
        assert price > 20.0 and 7 * units_at(price, 10.0, 20.0, -1.3, curvature) == pytest.approx(20.0)
    assert scarcity_price(200.0, 7.0, 20.0, 10.0, -1.3, -0.5) < 20.0  # plenty: a price under the reference
