"""One product's quote from a demand model: scarcity raises the price to what sells just the
stock, the target stays near the prices the curve was fitted on, a product the model has not
seen borrows its category's elasticity, out of stock holds the price, and the explanation
names the drivers and the rules that bound the price."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hanzo.server.models.errors import FailedPrecondition
from hanzo.server.pricing.demand_model import DemandModel
from hanzo.server.pricing.optimize import PriceRules, scarcity_price
from hanzo.server.pricing.quote import ProductNow, quote


def _model(elasticity=-2.0, low=8.0, high=12.0) -> DemandModel:
    return DemandModel(["p1"], ["mugs"], np.array([5.0]), np.array([10.0]), np.array([np.log(4.0)]),
                       np.array([elasticity]), np.zeros((1, 7)), np.array([40.0]), np.array([low]),
                       np.array([high]), {"mugs": -1.8}, "v-test")


RULES = PriceRules(min_margin=0.1, max_change=0.5)


def test_markup_optimum_inside_the_evidence():
    answer = quote(_model(), ProductNow("p1", "mugs", 5.0, 10.0, stock=None), 0, [], RULES, 7.0)
    assert answer.choice.price == pytest.approx(10.0)  # c b/(1+b) = 5 * 2 = 10
    assert answer.choice.drivers == ["markup"] and not answer.pooled
    assert answer.choice.expected_units == pytest.approx(4.0)
    assert answer.explanation.startswith("Price unchanged at 10.00: demand is elastic (its elasticity -2.00")


def test_scarcity_raises_the_price_to_what_sells_the_stock():
    # 14 units for 7 days at 4 a day at 10.00: sell 2 a day -> (p/10)^-2 = 1/2
    answer = quote(_model(high=20.0), ProductNow("p1", "mugs", 5.0, 10.0, stock=14.0), 0, [], RULES, 7.0)
    assert answer.choice.price == pytest.approx(10.0 * math.sqrt(2), abs=0.01)
    assert answer.choice.drivers == ["scarcity"]
    assert answer.choice.expected_units * 7 == pytest.approx(14.0, rel=0.01)
    assert "low inventory (14 in stock, ~28 expected to sell in the 7 days to the restock)" in answer.explanation
    assert answer.explanation.startswith("Price increased 41.4%")
    # held by price consistency: sales are still capped by the stock
    tight = quote(_model(high=20.0), ProductNow("p1", "mugs", 5.0, 10.0, stock=14.0), 0, [],
                  PriceRules(max_change=0.15), 7.0)
    assert tight.choice.price == 11.5 and tight.choice.active == ["price_consistency"]
    assert tight.choice.expected_units == pytest.approx(2.0)
    assert "Held within 15% of the previous price" in tight.explanation
    assert scarcity_price(14.0, 7.0, 10.0, 4.0, -2.0) == pytest.approx(10.0 * math.sqrt(2))


def test_the_target_stays_near_the_fitted_prices():
    # inelastic: profit rises with price without end; the curve saw prices up to 12
    answer = quote(_model(elasticity=-0.5), ProductNow("p1", "mugs", 5.0, 10.0), 0, [], RULES, 7.0,
                   extrapolation=0.1)
    assert answer.choice.price == pytest.approx(13.2) and "evidence_high" in answer.choice.drivers
    assert "the highest price the demand model has seen" in answer.explanation
    assert "inelastic" in answer.explanation


def test_an_unseen_product_borrows_its_category():
    answer = quote(_model(), ProductNow("new", "mugs", 5.0, 10.0, units_per_day=3.0), 0, [], RULES, 7.0)
    assert answer.pooled and answer.choice.unconstrained == pytest.approx(5.0 * 1.8 / 0.8)
    assert "its category's elasticity -1.80" in answer.explanation
    with pytest.raises(FailedPrecondition, match="no curve"):
        quote(_model(), ProductNow("new", "lamps", 5.0, 10.0), 0, [], RULES, 7.0)


def test_out_of_stock_holds_the_price():
    answer = quote(_model(), ProductNow("p1", "mugs", 5.0, 9.0, stock=0.0), 0, [], RULES, 7.0)
    assert answer.choice.price == 9.0 and answer.choice.expected_units == 0.0
    assert "out of stock" in answer.explanation


def test_conflicting_rules_are_said():
    answer = quote(_model(), ProductNow("p1", "mugs", 5.0, 10.0), 0, [4.0], RULES, 7.0)
    assert answer.choice.price == 5.5 and answer.choice.active == ["margin_floor"]
    assert answer.choice.violated == ["competitor_parity"]
    assert "Kept at the margin floor (10% over the cost of 5.00)" in answer.explanation
    assert "Competitor parity could not hold" in answer.explanation


def test_the_model_file_round_trips(tmp_path):
    model = _model()
    model.save(tmp_path / "m.npz")
    again = DemandModel.load(tmp_path / "m.npz")
    assert again.product_id == ["p1"] and again.version == "v-test" and again.category_elasticity == {"mugs": -1.8}
    np.testing.assert_array_equal(again.b1, model.b1)
