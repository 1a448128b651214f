"""The price that maximises expected profit `(p - c) q(p)` under the demand model
`q(p) = q_ref (p / p_ref)^b1` (the weekday and other drivers fold into q_ref), subject to:

- a margin floor `p >= (1 + m) c`;
- price consistency `|p - p_prev| <= delta * p_prev` (no jumps that shoppers notice);
- competitor parity `p <= max(competitor prices) + eps` (as the paper writes it).

Unconstrained, profit peaks at `p = c b1 / (1 + b1)` when demand is elastic (b1 < -1); with
inelastic demand it rises with price, so the upper constraints decide. Two things move that
target before the rules apply: scarcity (with less stock than the demand until the restock, the
price that sells just the stock earns more, since units beyond it cannot be sold) and the range
of prices the demand model was fitted on (a log-log curve is trusted only where it has seen
prices; beyond them the markup target stops at the range's edge, while scarcity may go past
it, the rules bounding each step). Constraints that
conflict are settled by precedence: the margin floor wins (a price below cost plus margin is
never quoted), then price consistency, then competitor parity; a rule that cannot hold is
priced as near as the others allow, and the result says which were active and which broken."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class PriceRules:
    min_margin: float = 0.10  # m: price at least (1 + m) x cost
    max_change: float = 0.15  # delta: at most this share from the previous price
    parity_slack: float = 0.0  # eps: at most this above the dearest competitor


@dataclass
class PriceChoice:
    price: float
    expected_units: float
    expected_profit: float
    unconstrained: float  # the profit-maximising price before constraints (inf: inelastic)
    target: float  # after scarcity and the evidence range, before the rules
    drivers: list[str] = field(default_factory=list)  # what set the target: markup, scarcity, evidence_low/high
    active: list[str] = field(default_factory=list)  # constraints that set or bound the price
    violated: list[str] = field(default_factory=list)  # rules that gave way to those before them


def units_at(price: float, reference_units: float, reference_price: float, elasticity: float) -> float:
    return reference_units * (price / reference_price) ** elasticity


def scarcity_price(units_in_stock: float, days: float, reference_price: float, reference_units: float,
                   elasticity: float) -> float:
    """The price at which expected sales over `days` equal the stock (0 when demand does not
    fall with price, or there is no demand)."""
    if elasticity >= 0 or reference_units <= 0 or days <= 0:
        return 0.0
    return reference_price * (max(units_in_stock, 1e-9) / (days * reference_units)) ** (1 / elasticity)


def best_price(cost: float, reference_price: float, reference_units: float, elasticity: float,
               previous_price: float, competitor_prices: list[float] | None = None,
               rules: PriceRules | None = None, scarcity: float = 0.0,
               evidence: tuple[float, float] = (0.0, math.inf)) -> PriceChoice:
    """`scarcity`: the scarcity_price (0: stock is no limit); `evidence`: the range of prices
    the demand curve was fitted on."""
    rules = rules or PriceRules()
    if cost < 0 or reference_price <= 0 or previous_price <= 0 or reference_units < 0:
        raise ValueError("cost must be >= 0, prices > 0 and units >= 0")
    unconstrained = cost * elasticity / (1 + elasticity) if elasticity < -1 else math.inf
    target, drivers = unconstrained, ["markup"]
    if target > evidence[1]:
        target, drivers = evidence[1], drivers + ["evidence_high"]
    elif target < evidence[0]:
        target, drivers = evidence[0], drivers + ["evidence_low"]
    if scarcity > target:  # what stock there is sells anyway: the direction is certain, the rules bound the step
        target, drivers = scarcity, ["scarcity"]
    floor = (1 + rules.min_margin) * cost
    # in order of precedence: a rule that cannot hold with those before it gives way, and the
    # price goes as near it as they allow
    bounds = [("margin_floor", floor, math.inf),
              ("price_consistency", previous_price * (1 - rules.max_change), previous_price * (1 + rules.max_change))]
    if competitor_prices:
        bounds.append(("competitor_parity", 0.0, max(competitor_prices) + rules.parity_slack))
    lower, upper, lower_name, upper_name = 0.0, math.inf, "", ""
    for name, lo, hi in bounds:
        if hi < lower:  # wants lower than the rules above allow: as low as they allow
            upper, upper_name = lower, lower_name
            continue
        if lo > upper:
            lower, lower_name = upper, upper_name
            continue
        if lo > lower:
            lower, lower_name = lo, name
        if hi < upper:
            upper, upper_name = hi, name
    price = min(max(target, lower), upper)
    active = []
    if price == lower and target < lower:
        active.append(lower_name)
    if price == upper and target > upper:
        active.append(upper_name)
    price = max(round(price, 2), math.ceil(floor * 100 - 1e-9) / 100)  # cents, never under the floor
    violated = [name for name, lo, hi in bounds if not lo - 0.005 <= price <= hi + 0.005]
    units = units_at(price, reference_units, reference_price, elasticity)
    return PriceChoice(price, units, (price - cost) * units, unconstrained, target, drivers, active, violated)
