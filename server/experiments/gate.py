"""The promotion gate: a candidate's arm against production's, judged whenever asked, with a
p-value valid however often that is (server/experiments/sequential.py).

A verdict, in this order:
- `stop` on a sample ratio mismatch: the shoppers did not fall into the arms as the split says,
  so the assignment or the logging is broken and no comparison can be trusted (`wait`, saying
  so, while watching: nothing is rolled back on data that cannot be trusted);
- `wait` until each arm has `min_shoppers` shoppers (the test does not look before: its
  variance comes from the shoppers, and a handful can make it far too small);
- `stop` when the candidate is significantly worse on the metric;
- `promote` when it is significantly better and its p99 latency is within `latency_ratio` of
  production's (`wait`, saying so, while it is not);
- `wait` otherwise.
After a promotion, the same gate with the roles turned (the new production against the
version it replaced) watches for a degradation: there a significantly worse new version is
`rollback`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .outcomes import ArmOutcomes
from .sequential import AlwaysValidTest, compare, sample_ratio_p

METRICS = ("clicks", "purchases", "revenue")  # per list shown


@dataclass(frozen=True)
class GateConfig:
    metric: str = "clicks"
    alpha: float = 0.05
    # the spread of differences the test expects, as a share of production's rate: it sets how
    # fast a real difference is found, never the rate of false promotions
    tau_relative: float = 0.1
    min_shoppers: int = 200
    latency_ratio: float = 1.1
    srm_alpha: float = 0.001

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"gate metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        if not 0 < self.alpha < 1 or not 0 < self.srm_alpha < 1:
            raise ValueError("gate alpha and srm_alpha must be in (0, 1)")
        if not (0 < self.tau_relative < math.inf and 1 <= self.latency_ratio < math.inf and self.min_shoppers >= 2):
            raise ValueError("gate tau_relative must be finite and > 0, latency_ratio finite and >= 1, "
                             "min_shoppers >= 2")


@dataclass(frozen=True)
class Verdict:
    action: str  # wait | promote | stop | rollback
    reason: str
    figures: dict = field(default_factory=dict)


class Gate:
    """One comparison's judge: production's arm against one candidate version's (or, watching,
    the new production against the version it replaced). Its test's p-value only falls, so a
    gate belongs to one pair of versions."""

    def __init__(self, config: GateConfig, shares: tuple[float, float], watching: bool = False) -> None:
        self.config = config
        self.shares = shares  # the split's shares of the two arms judge() is given, in its order
        self.watching = watching
        self.test = AlwaysValidTest(config.alpha, config.tau_relative)

    def judge(self, production: ArmOutcomes, candidate: ArmOutcomes,
              latency_p99_ms: tuple[float, float] | None = None) -> Verdict:
        base, new = getattr(production, self.config.metric), getattr(candidate, self.config.metric)
        srm = sample_ratio_p([base.n, new.n], list(self.shares))
        comparison = compare(base, new)
        # the test looks only once each arm has min_shoppers: its variance is estimated from the
        # shoppers, and from a handful it can be far too small, which an always-valid p-value
        # (it only ever falls) would keep for good
        ready = min(base.n, new.n) >= self.config.min_shoppers
        p = self.test.look(comparison, base.ratio) if ready else self.test.p
        figures = {"metric": self.config.metric, "production_shoppers": base.n, "candidate_shoppers": new.n,
                   "production_rate": _round(base.ratio), "candidate_rate": _round(new.ratio),
                   "relative_difference": _round(comparison.relative) if comparison else None,
                   "p_always_valid": _round(p), "looks": self.test.looks, "sample_ratio_p": _round(srm)}
        if srm < self.config.srm_alpha:  # watching, nothing is rolled back on data that cannot be trusted
            return Verdict("wait" if self.watching else "stop", f"sample ratio mismatch: {base.n} and {new.n} shoppers where the split is "
                                   f"{self.shares[0]:g} : {self.shares[1]:g} (p = {srm:.2g})", figures)
        if not ready:
            return Verdict("wait", f"fewer than {self.config.min_shoppers} shoppers in an arm", figures)
        if not self.test.significant or comparison is None:
            return Verdict("wait", f"no significant difference yet (p = {p:.3g})", figures)
        if comparison.difference < 0:
            action = "rollback" if self.watching else "stop"
            return Verdict(action, f"{self.config.metric} per list {comparison.relative:+.1%} against "
                                   f"{'the version it replaced' if self.watching else 'production'} (p = {p:.3g})",
                           figures)
        if self.watching:
            return Verdict("wait", f"no worse than the version it replaced ({comparison.relative:+.1%})", figures)
        if latency_p99_ms is not None:
            base_ms, new_ms = latency_p99_ms
            figures["latency_p99_ms"] = [round(base_ms, 3), round(new_ms, 3)]
            if new_ms > self.config.latency_ratio * base_ms:
                return Verdict("wait", f"better ({comparison.relative:+.1%}) but its p99 {new_ms:.2f} ms is over "
                                       f"{self.config.latency_ratio:g}x production's {base_ms:.2f} ms", figures)
        return Verdict("promote", f"{self.config.metric} per list {comparison.relative:+.1%} (p = {p:.3g})", figures)


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)
