"""Tests of a candidate against production that stay valid however often they are looked at.

The mixture sequential probability ratio test (mSPRT; Johari, Pekelis and Walsh, "Always
valid inference", Operations Research 2022): for an estimated difference `d` with variance `v`
and a normal mixture N(0, tau^2) over the true difference, the likelihood ratio against "no
difference" is

    L = sqrt(v / (v + tau^2)) * exp(d^2 tau^2 / (2 v (v + tau^2)))

and `1 / max L` over the looks so far is a p-value valid at every look: checked after each
outcome or each day, the chance that it ever falls under alpha when nothing differs is at most
alpha. A fixed-sample z-test checked the same way is not (it is the paper's daily gate; kept
here to be compared with).

The metric is a ratio of sums over randomisation units (clicks / lists shown, revenue /
decisions), each unit a shopper: outcomes of one shopper are not independent, so the variance
is the delta method's over shoppers, never over impressions. Sums are kept incrementally: a
shopper's totals change as they return, and each change moves the squares by the difference."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class RatioArm:
    """One arm's outcomes: per unit (shopper) a numerator (clicks, revenue) and a denominator
    (lists shown, decisions), and the sums the delta method needs."""
    units: dict[str, tuple[float, float]] = field(default_factory=dict)
    # False: the sums of num and den only, nothing per unit (a count kept outside any
    # comparison, whose memory must not grow with the shoppers); n and the variance are not kept
    per_unit: bool = True
    n: int = 0
    num: float = 0.0
    den: float = 0.0
    num2: float = 0.0
    den2: float = 0.0
    cross: float = 0.0

    def add(self, unit: str, numerator: float, denominator: float) -> None:
        """Add to a unit's totals (a list shown: denominator 1; its click: numerator 1)."""
        if not self.per_unit:
            self.num += numerator
            self.den += denominator
            return
        old_num, old_den = self.units.get(unit, (0.0, 0.0))
        if unit not in self.units:
            self.n += 1
        new_num, new_den = old_num + numerator, old_den + denominator
        self.units[unit] = (new_num, new_den)
        self.num += numerator
        self.den += denominator
        self.num2 += new_num * new_num - old_num * old_num
        self.den2 += new_den * new_den - old_den * old_den
        self.cross += new_num * new_den - old_num * old_den

    def remove(self, unit: str) -> None:
        """A unit gone entirely (a shopper erased on request): its totals leave the sums."""
        totals = self.units.pop(unit, None)
        if totals is None:
            return
        num, den = totals
        self.n -= 1
        self.num -= num
        self.den -= den
        self.num2 -= num * num
        self.den2 -= den * den
        self.cross -= num * den

    @property
    def ratio(self) -> float:
        return self.num / self.den if self.den > 0 else math.nan

    @property
    def variance(self) -> float:
        """Of the ratio, by the delta method over units: Var(num_u - R den_u) / (n mean(den)^2)."""
        if self.n < 2 or self.den <= 0:
            return math.nan
        r = self.ratio
        residual = max(self.num2 - 2 * r * self.cross + r * r * self.den2, 0.0) / self.n
        mean_den = self.den / self.n
        return residual / (self.n * mean_den * mean_den)


@dataclass(frozen=True)
class Comparison:
    difference: float  # candidate's ratio minus production's
    relative: float  # the difference over production's ratio
    variance: float  # of the difference
    z: float

    @property
    def standard_error(self) -> float:
        return math.sqrt(self.variance)


def compare(production: RatioArm, candidate: RatioArm) -> Comparison | None:
    """The candidate's difference from production; None until both arms have a variance."""
    v = production.variance + candidate.variance
    if not (math.isfinite(v) and v > 0):
        return None
    d = candidate.ratio - production.ratio
    base = production.ratio
    return Comparison(d, d / base if base else math.nan, v, d / math.sqrt(v))


def mixture_likelihood_ratio(difference: float, variance: float, tau: float) -> float:
    """The mSPRT's statistic for an estimate `difference` of variance `variance`, mixing over
    N(0, tau^2) differences (logs kept, so a decisive lead does not overflow)."""
    t2 = tau * tau
    log_l = 0.5 * math.log(variance / (variance + t2)) + difference * difference * t2 / (2 * variance * (variance + t2))
    return math.exp(min(log_l, 700.0))


@dataclass
class AlwaysValidTest:
    """The mSPRT looked at after every batch of outcomes: `p` only ever falls; `tau_relative`
    is the spread of differences it expects, as a share of production's ratio (it decides how
    fast a real difference is found, never the false-alarm rate)."""
    alpha: float = 0.05
    tau_relative: float = 0.1
    p: float = 1.0
    looks: int = 0

    def look(self, comparison: Comparison | None, baseline: float) -> float:
        if comparison is None or not (math.isfinite(baseline) and baseline > 0):
            return self.p
        self.looks += 1
        tau = self.tau_relative * baseline
        self.p = min(self.p, 1.0 / max(mixture_likelihood_ratio(comparison.difference, comparison.variance, tau),
                                       1.0))
        return self.p

    @property
    def significant(self) -> bool:
        return self.p < self.alpha


def fixed_z_significant(comparison: Comparison | None, alpha: float = 0.05) -> bool:
    """The paper's gate: a two-sided z-test at `alpha` on whatever has arrived (valid once, at
    a sample size fixed in advance; not when looked at daily)."""
    if comparison is None:
        return False
    return abs(comparison.z) > _z_two_sided(alpha)


def _z_two_sided(alpha: float) -> float:
    """The normal quantile 1 - alpha/2, by bisection on erfc (no scipy on the serving path)."""
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if math.erfc(mid / math.sqrt(2)) > alpha:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def sample_ratio_p(counts: list[int], shares: list[float]) -> float:
    """A chi-square test that the units fell into the arms as the split says (a sample ratio
    mismatch means the assignment or the logging is broken, and no comparison can be trusted)."""
    total = sum(counts)
    if total == 0:
        return 1.0
    scale = sum(shares)
    statistic = sum((c - total * s / scale) ** 2 / (total * s / scale) for c, s in zip(counts, shares) if s > 0)
    return _chi2_sf(statistic, len([s for s in shares if s > 0]) - 1)


def _chi2_sf(x: float, dof: int) -> float:
    """The chi-square survival function for small integer degrees of freedom."""
    if dof <= 0:
        return 1.0
    if dof == 1:
        return math.erfc(math.sqrt(max(x, 0.0) / 2))
    if dof == 2:
        return math.exp(-x / 2)
    # regularised upper gamma Q(dof/2, x/2) by its series: dof stays small (a few arms)
    a, half = dof / 2, x / 2
    term = total = 1.0 / a
    k = 1
    while term > total * 1e-15 and k < 10_000:
        term *= half / (a + k)
        total += term
        k += 1
    lower = math.exp(-half + a * math.log(half) - math.lgamma(a)) * total if half > 0 else 0.0
    return max(0.0, 1.0 - lower)
