"""Which arm a shopper is in: a stable hash of the experiment's salt and the merchant's shopper
(or the session, for a shopper without an id), so a shopper stays in one arm on every call,
every replica and every restart, two shops' shoppers of one id are split independently, and a
new experiment (a new salt) splits them afresh."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

PRODUCTION, CANDIDATE, HOLDOUT = "production", "candidate", "holdout"
# while a version the gate promoted is watched: the candidate's share, served the version it replaced
PREVIOUS = "previous"


def bucket(salt: str, unit: str) -> float:
    """The unit's place in [0, 1) for this salt: uniform, and independent across salts."""
    digest = hashlib.blake2b(unit.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class Split:
    """Shares of units per arm: `holdout` get no model (the non-personalised list), `candidate`
    the model's candidate, production the rest. The holdout is drawn by the salt alone, so it
    stays the same shoppers from candidate to candidate; the candidate's arm is drawn again
    for each candidate (`candidate_key`: its version), so no shopper sees every candidate."""
    candidate: float = 0.0
    holdout: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.candidate <= 1 and 0 <= self.holdout < 1 and self.candidate + self.holdout <= 1):
            raise ValueError(f"arm shares must be in [0, 1] and sum to at most 1, not candidate {self.candidate} "
                             f"and holdout {self.holdout}")

    @property
    def shares(self) -> dict[str, float]:
        return {PRODUCTION: 1.0 - self.candidate - self.holdout, CANDIDATE: self.candidate, HOLDOUT: self.holdout}

    def arm(self, salt: str, unit: str, candidate_key: str = "") -> str:
        if self.holdout and bucket(f"{salt}:holdout", unit) < self.holdout:
            return HOLDOUT
        if self.candidate and bucket(f"{salt}:candidate:{candidate_key}", unit) < self.candidate / (1 - self.holdout):
            return CANDIDATE
        return PRODUCTION
