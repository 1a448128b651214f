"""One product's quote from the demand model and what is known of the product now (its cost,
current price, stock, today's traffic): the constrained profit-maximising price, the units and
profit expected at it today, and the explanation. QuotePrice and the simulator's closed-loop
replay both price through here."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..models.errors import FailedPrecondition
from .demand_model import DemandModel
from .explain import Situation, explain
from .optimize import PriceChoice, PriceRules, best_price, scarcity_price


@dataclass
class ProductNow:
    product_id: str
    category: str  # the top-level category (the demand model's pooling group)
    cost: float
    price: float  # the price in effect
    stock: float | None = None  # units on hand (None: not tracked)
    views_today: float = math.nan  # product views in the last 24 hours
    views_per_day: float = math.nan  # recent usual: views in the last 7 days / 7
    units_per_day: float = 0.0  # recent sales a day (prices a product the model has no curve for)


@dataclass
class Quote:
    choice: PriceChoice
    explanation: str
    pooled: bool


def _traffic(now: ProductNow, usual_views: float) -> float:
    """Today's views against usual, a view added to both so a quiet product's one view is not
    'traffic doubled'; nan when unknown."""
    usual = usual_views if usual_views > 0 else now.views_per_day
    if not (math.isfinite(now.views_today) and math.isfinite(usual) and usual > 0):
        return math.nan
    # a day's views are noisy: no more than 4x either way
    return min(max((now.views_today + 1.0) / (usual + 1.0), 0.25), 4.0)


def quote(model: DemandModel, now: ProductNow, weekday: int, competitor_prices: list[float], rules: PriceRules,
          restock_days: float, extrapolation: float = 0.5) -> Quote:
    """`extrapolation`: how far past the range of prices the curve was fitted on its target may
    go (0.5: 50% beyond the highest and a third below the lowest), so that a shop that reprices and
    refits explores step by step rather than trusting a log-log curve far from its data."""
    curve = model.curve(now.product_id, now.category, weekday, now.price, now.units_per_day)
    if curve is None:
        raise FailedPrecondition(f"the demand model {model.version!r} has no curve for product {now.product_id!r} "
                                 f"nor for its category {now.category!r}: retrain it (`hanzo train pricing`)")
    traffic = _traffic(now, curve.usual_views)
    scale = traffic if math.isfinite(traffic) else 1.0
    units_now = curve.units(now.price, scale)
    situation = Situation(now.price, now.cost, curve.elasticity_at(now.price), curve.pooled, traffic, weekday,
                          curve.weekday_lift, now.stock, restock_days, units_now * restock_days,
                          max(competitor_prices) if competitor_prices else None)
    if now.stock is not None and now.stock <= 0:
        held = PriceChoice(now.price, 0.0, 0.0, math.nan, now.price, ["out_of_stock"])
        return Quote(held, f"Price unchanged ({now.price:,.2f}): out of stock, nothing to sell until the restock.",
                     curve.pooled)
    scarce = 0.0
    if now.stock is not None:
        scarce = scarcity_price(now.stock, restock_days, curve.reference_price, curve.reference_units * scale,
                                curve.elasticity, curve.curvature)
    evidence = (curve.price_low / (1 + extrapolation), curve.price_high * (1 + extrapolation))
    if curve.pooled:  # no range of its own: the rules' steps from today's price
        evidence = (0.0, math.inf)
    choice = best_price(now.cost, curve.reference_price, curve.reference_units * scale, curve.elasticity, now.price,
                        competitor_prices, rules, scarcity=scarce, evidence=evidence, curvature=curve.curvature)
    if now.stock is not None and choice.expected_units * restock_days > now.stock:
        # a rule kept the price under the scarcity price: no more than the stock sells
        choice.expected_units = now.stock / restock_days
        choice.expected_profit = (choice.price - now.cost) * choice.expected_units
    return Quote(choice, explain(choice, situation, rules), curve.pooled)

