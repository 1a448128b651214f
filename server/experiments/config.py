"""[experiment]: how Recommend's shoppers are split between production, the candidate and a
holdout, and whether the promotion gate decides by itself."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .arms import CANDIDATE, PRODUCTION, Split
from .gate import GateConfig


@dataclass(frozen=True)
class ExperimentConfig:
    candidate_share: float = 0.0  # of shoppers, answered by the candidate while one is loaded
    holdout_share: float = 0.0  # of shoppers, given the non-personalised list: what the model adds
    salt: str = "hanzo"  # change it to split every shopper afresh
    # the gate: promote a candidate that is significantly better (and not slower), stop one
    # that is worse, watch a promoted one against the version it replaced and roll it back
    gate: bool = False
    gate_every_s: float = 60.0
    metric: str = "clicks"  # clicks | purchases | revenue, per list shown
    alpha: float = 0.05
    tau_relative: float = 0.1
    min_shoppers: int = 200  # per arm, before any verdict
    latency_ratio: float = 1.1  # the candidate's p99 at most this times production's
    attribution_hours: float = 24.0  # a purchase counts for a click this long before it
    # lists served (Recommend's and Search's) remembered for their clicks, about half a KB each;
    # hanzo_experiment_outcomes_late counts clicks on lists already forgotten
    outcome_lists: int = 100_000

    def __post_init__(self) -> None:
        self.split  # checks the shares
        self.gate_config  # checks the gate's options
        if not self.salt or len(self.salt) > 64:
            raise ValueError(f"[experiment] salt must be 1 to 64 characters, not {self.salt!r}")
        if self.gate and self.candidate_share <= 0:
            raise ValueError("[experiment] gate needs a candidate_share above 0: the candidate's arm is what it judges")
        if not 1_000 <= self.outcome_lists <= 10_000_000:
            raise ValueError(f"[experiment] outcome_lists must be in [1000, 10000000], not {self.outcome_lists}")
        if not 0 < self.gate_every_s <= 86_400 or not 0 < self.attribution_hours <= 24 * 90:
            raise ValueError("[experiment] gate_every_s must be in (0, 86400] and attribution_hours in (0, 2160]")

    @property
    def gate_config(self) -> GateConfig:
        return GateConfig(self.metric, self.alpha, self.tau_relative, self.min_shoppers, self.latency_ratio)

    @cached_property
    def split(self) -> Split:
        """Made once: every Recommend call of an experiment asks for it."""
        return Split(self.candidate_share, self.holdout_share)

    @property
    def enabled(self) -> bool:
        return self.candidate_share > 0 or self.holdout_share > 0

    def arm(self, model: str, merchant: str, unit: str, candidate_version: int | None) -> str:
        """The arm of a shopper (or session) of a merchant for `model`; production for a call
        with no one to split by, and the candidate's share falls to production while the model
        has no candidate."""
        if not unit or not self.enabled:
            return PRODUCTION
        arm = self.split.arm(f"{self.salt}:{model}", f"{merchant}/{unit}", str(candidate_version or ""))
        return PRODUCTION if arm == CANDIDATE and candidate_version is None else arm
