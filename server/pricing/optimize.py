"""The price that maximises expected profit `(p - c) q(p)` under the demand model
`q(p) = q_ref (p / p_ref)^b1 exp(b2 log(p / p_ref)^2)` (the weekday and other drivers fold into
q_ref; b2 = 0 is the paper's log-log curve), subject to:

- a margin floor `p >= (1 + m) c`;
- price consistency `|p - p_prev| <= delta * p_prev` (no jumps that shoppers notice);
- competitor parity `p <= max(competitor prices) + eps` (as the paper writes it).

Unconstrained, profit peaks where `p / (p - c)` equals minus the elasticity there: `p = c b1 /
(1 + b1)` for log-log demand that is elastic (b1 < -1); with inelastic log-log demand it rises
with price, so the upper constraints decide. Two things move that
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


def units_at(price: float, reference_units: float, reference_price: float, elasticity: float,
             curvature: float = 0.0) -> float:
    """`log q = log q_ref + b1 x + b2 x^2`, x = log(p / p_ref): b2 = 0 is the paper's log-log
    curve; b2 < 0 lets demand grow more elastic as the price rises (as a choice model's does)."""
    x = math.log(price / reference_price)
    return reference_units * math.exp(elasticity * x + curvature * x * x)


def elasticity_at(price: float, reference_price: float, elasticity: float, curvature: float = 0.0) -> float:
    return elasticity + 2.0 * curvature * math.log(price / reference_price)


def markup_optimum(cost: float, reference_price: float, elasticity: float, curvature: float = 0.0) -> float:
    """argmax (p - c) q(p): where p / (p - c) = -elasticity_at(p) (inf when profit keeps rising)."""
    if curvature >= 0:
        return cost * elasticity / (1 + elasticity) if elasticity < -1 else math.inf
    # p/(p - c) falls from +inf to 1 and elasticity_at(p) falls without bound: one root, in log p
    lo = math.log(cost) + 1e-9 if cost > 0 else math.log(reference_price) - 50.0
    hi = lo + 1.0
    while p_gap(math.exp(hi), cost, reference_price, elasticity, curvature) > 0 and hi < lo + 60:
        hi = lo + 2 * (hi - lo)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if p_gap(math.exp(mid), cost, reference_price, elasticity, curvature) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-7:
            break
    return math.exp(0.5 * (lo + hi))


def p_gap(price: float, cost: float, reference_price: float, elasticity: float, curvature: float) -> float:
    """d log profit / d log p: positive below the optimum."""
    return price / (price - cost) + elasticity_at(price, reference_price, elasticity, curvature)


def scarcity_price(units_in_stock: float, days: float, reference_price: float, reference_units: float,
                   elasticity: float, curvature: float = 0.0) -> float:
    """The price at which expected sales over `days` equal the stock (0 when demand does not
    fall with price, or never reaches the stock's pace)."""
    if reference_units <= 0 or days <= 0:
        return 0.0
    gap = math.log(reference_units) - math.log(max(units_in_stock, 1e-9) / days)  # log q_ref - log target
    if curvature >= 0:
        if elasticity >= 0:
            return 0.0
        return reference_price * math.exp(-gap / elasticity)
    # c2 x^2 + b1 x + gap = 0, on the falling side of the parabola: the larger root
    discriminant = elasticity * elasticity - 4 * curvature * gap
    if discriminant < 0:
        return 0.0
    x = (-elasticity - math.sqrt(discriminant)) / (2 * curvature)
    return reference_price * math.exp(x)


def best_price(cost: float, reference_price: float, reference_units: float, elasticity: float,
               previous_price: float, competitor_prices: list[float] | None = None,
               rules: PriceRules | None = None, scarcity: float = 0.0,
               evidence: tuple[float, float] = (0.0, math.inf), curvature: float = 0.0) -> PriceChoice:
    """`scarcity`: the scarcity_price (0: stock is no limit); `evidence`: the range of prices
    the demand curve was fitted on."""
    rules = rules or PriceRules()
    if cost < 0 or reference_price <= 0 or previous_price <= 0 or reference_units < 0:
        raise ValueError("cost must be >= 0, prices > 0 and units >= 0")
    unconstrained = markup_optimum(cost, reference_price, elasticity, curvature)
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
    units = units_at(price, reference_units, reference_price, elasticity, curvature)
    return PriceChoice(price, units, (price - cost) * units, unconstrained, target, drivers, active, violated)
