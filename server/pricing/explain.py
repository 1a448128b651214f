"""The sentence a merchant reads beside a quoted price: which way it moved and why, in the
drivers' own words ("Price increased 8% (18.50 -> 19.98) due to low inventory and high demand"),
then the rules that held it back and any rule that had to give way."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .optimize import PriceChoice, PriceRules

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
HIGH, LOW = 1.2, 0.8  # demand this far above or below usual is worth saying


@dataclass
class Situation:
    """What the price was chosen from, beyond the choice itself."""
    previous_price: float
    cost: float
    elasticity: float
    pooled: bool  # the elasticity is the category's
    traffic: float  # today's product views against usual (1: usual; nan: unknown)
    weekday: int
    weekday_lift: float
    stock: float | None  # units on hand (None: not tracked)
    restock_days: float
    units_to_restock: float  # expected sales until the restock at the previous price
    competitor_max: float | None


def _money(x: float) -> str:
    return f"{x:,.2f}"


def demand_words(situation: Situation) -> str:
    """'high demand (traffic +45% over usual)', 'high demand (Saturday)', or ''."""
    if math.isfinite(situation.traffic) and situation.traffic >= HIGH:
        return f"high demand (traffic {situation.traffic - 1:+.0%} over usual)"
    if math.isfinite(situation.traffic) and situation.traffic <= LOW:
        return f"low demand (traffic {situation.traffic - 1:+.0%} against usual)"
    if situation.weekday_lift >= 1.1:
        return f"high demand ({WEEKDAYS[situation.weekday]})"
    return ""


def explain(choice: PriceChoice, situation: Situation, rules: PriceRules) -> str:
    change = choice.price / situation.previous_price - 1
    if abs(change) < 0.0005:
        head = f"Price unchanged at {_money(choice.price)}"
    else:
        head = (f"Price {'increased' if change > 0 else 'decreased'} {abs(change):.1%} "
                f"({_money(situation.previous_price)} -> {_money(choice.price)})")
    if "scarcity" in choice.drivers:
        reasons = [f"low inventory ({situation.stock:,.0f} in stock, ~{situation.units_to_restock:,.0f} expected "
                   f"to sell in the {situation.restock_days:g} days to the restock)"]
        demand = demand_words(situation)
        if demand.startswith("high"):
            reasons.append(demand)
        text = f"{head} due to {' and '.join(reasons)}."
    else:
        whose = "its category's" if situation.pooled else "its"
        if situation.elasticity < -1:
            text = (f"{head}: demand is elastic ({whose} elasticity {situation.elasticity:.2f}: 1% off the price "
                    f"sells ~{-situation.elasticity:.1f}% more), so profit peaks at {_money(choice.unconstrained)}.")
        else:
            text = (f"{head}: demand is inelastic ({whose} elasticity {situation.elasticity:.2f}): a higher price "
                    f"loses fewer sales than it earns.")
    if "evidence_high" in choice.drivers or "evidence_low" in choice.drivers:
        edge = "highest" if "evidence_high" in choice.drivers else "lowest"
        text += f" The target stops at {_money(choice.target)}, the {edge} price the demand model has seen."
    bounds = {
        "margin_floor": f"Kept at the margin floor ({rules.min_margin:.0%} over the cost of {_money(situation.cost)}).",
        "price_consistency": f"Held within {rules.max_change:.0%} of the previous price (price consistency).",
        "competitor_parity": (f"Capped at the dearest competitor's price {_money(situation.competitor_max or 0.0)}"
                              + (f" plus {_money(rules.parity_slack)}" if rules.parity_slack else "")
                              + " (competitor parity)."),
    }
    for name in choice.active:
        text += " " + bounds[name]
    for name in choice.violated:
        text += f" {name.replace('_', ' ').capitalize()} could not hold: the rules before it win (margin floor first)."
    return text
