"""The demand model's fit: on data drawn from its own form (log-log, weekday effects, views as
exposure) it recovers each product's elasticity, and pooling pulls a sparse product toward its
category; the simulator knows its own elasticities."""
from __future__ import annotations

import numpy as np
import pytest

from hanzo.training.pricing.demand import ProductDays, fit_demand


def _product(rng, product_id, category, elasticity, days=200, rate=3.0):
    price = 10.0 * rng.choice([0.8, 0.9, 1.0, 1.0, 1.0, 1.1, 1.2], size=days)
    weekday = np.arange(days) % 7
    views = rng.poisson(40, days).astype(float)
    mu = views * rate / 40 * (price / 10.0) ** elasticity * np.exp(0.2 * (weekday == 5))
    return ProductDays(product_id, category, 5.0, price, rng.poisson(mu).astype(float), weekday, views,
                       np.zeros(days, bool))


def test_recovers_elasticities_when_the_form_is_right():
    rng = np.random.default_rng(0)
    truth = {f"p{i}": e for i, e in enumerate((-0.8, -1.5, -2.5, -3.0))}
    panel = [_product(rng, p, "c", e, days=400, rate=6.0) for p, e in truth.items()]
    model = fit_demand(panel, pooling=0.0)
    for p, b1 in zip(model.product_id, model.b1):
        assert abs(b1 - truth[p]) < 0.35, (p, b1, truth[p])
    row = model.product_id.index("p1")
    # expected units at the reference price and at a 10% higher one follow the fitted slope
    q = model.expected_units(row, np.array([model.reference_price[row], 1.1 * model.reference_price[row]]), 0)
    assert np.log(q[1] / q[0]) / np.log(1.1) == pytest.approx(model.b1[row])


def test_pooling_pulls_a_sparse_product_toward_its_category():
    rng = np.random.default_rng(1)
    panel = [_product(rng, f"p{i}", "c", -2.0) for i in range(6)]
    panel.append(_product(rng, "sparse", "c", -2.0, days=30, rate=0.3))
    alone = fit_demand(panel, pooling=0.0)
    pooled = fit_demand(panel, pooling=50.0)
    i = alone.product_id.index("sparse")
    assert abs(pooled.b1[i] + 2.0) < abs(alone.b1[i] + 2.0) or abs(alone.b1[i] + 2.0) < 0.1
    assert abs(pooled.b1[i] + 2.0) < 0.5


def test_the_simulator_reports_true_elasticities():
    from hanzo.training.simulator import SimulationConfig
    from hanzo.training.simulator.world import Simulation

    sim = Simulation(SimulationConfig(seed=3, users=300, products=40, days=5)).run()
    values = np.array(list(sim.truth.price_elasticity.values()))
    assert len(values) == 40 and (values < 0).all() and (values > -6).all()


def test_curvature_is_read_when_demand_bends_and_stays_near_zero_when_it_does_not():
    rng = np.random.default_rng(4)

    def bent(product_id, b2):
        days = 300
        price = 10.0 * rng.choice([0.7, 0.8, 0.9, 1.0, 1.0, 1.1, 1.25, 1.4], size=days)
        views = rng.poisson(60, days).astype(float)
        x = np.log(price / 10.0)
        mu = views * 0.1 * np.exp(-1.5 * x + b2 * x * x)
        return ProductDays(product_id, "c", 5.0, price, rng.poisson(mu).astype(float), np.arange(days) % 7, views,
                           np.zeros(days, bool))

    curved = fit_demand([bent(f"p{i}", -2.0) for i in range(6)])
    straight = fit_demand([bent(f"p{i}", 0.0) for i in range(6)])
    assert -3.0 < curved.b2[0] < -1.0, curved.b2[0]
    assert straight.b2[0] > -0.5, straight.b2[0]
    assert abs(np.median(straight.b1) + 1.5) < 0.3
