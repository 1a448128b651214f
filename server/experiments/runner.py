"""The gate at work on a running server: every `gate_every_s`, Recommend's candidate arm is
judged against production's (server/experiments/gate.py) and the verdict carried out.

- `promote`: the production pointer moves to the candidate (Promotions, as `hanzo models
  promote` does, recorded as by "gate"). The version it replaced stays loaded, and the
  candidate's share of shoppers is now served by it (arm `previous`): the gate watches the new
  production against it, with a fresh test, until the next candidate arrives.
- `rollback` (while watching): the pointer goes back, and the version is stopped.
- `stop`: the candidate is stopped: its share of shoppers goes back to production, and the
  gate never promotes it. Stopped versions are remembered for the server's life; a restart
  judges them again from nothing.
Each verdict that changes is logged; the latest is in `status()`."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .arm_latency import ArmLatency
from .arms import CANDIDATE, PREVIOUS, PRODUCTION
from .config import ExperimentConfig
from .gate import Gate, Verdict
from .outcomes import OutcomeJoin

log = logging.getLogger(__name__)


class GateRunner:
    def __init__(self, model: str, repository: Any, promotions: Any, outcomes: OutcomeJoin, latency: ArmLatency,
                 config: ExperimentConfig) -> None:
        self.model = model
        self.repository = repository  # serving_version, candidate, get
        self.promotions = promotions  # promote, rollback
        self.outcomes = outcomes
        self.latency = latency
        self.config = config
        self.stopped: dict[int, str] = {}  # version -> why the gate stopped it
        self.watching: tuple[int, int] | None = None  # (the version promoted, the version it replaced)
        self._gates: dict[tuple[int, int, bool], Gate] = {}
        self.last: Verdict | None = None
        self.actions: list[dict] = []  # every promotion, stop and rollback, in order

    def challenger(self) -> tuple[Any, str] | None:
        """The version the candidate's share of shoppers gets now, and its arm's name."""
        serving = self.repository.serving_version(self.model)
        candidate = self.repository.candidate(self.model)
        newer = candidate is not None and candidate.version not in self.stopped
        if self.watching is not None and self.watching[0] == serving and not newer:
            try:
                return self.repository.get(self.model, str(self.watching[1])), PREVIOUS
            except Exception:  # noqa: BLE001 - the replaced version went (unloaded): nothing to watch against
                self.watching = None
        return (candidate, CANDIDATE) if newer else None

    async def step(self) -> Verdict | None:
        """One look; the verdict, None when there is nothing to judge."""
        serving = self.repository.serving_version(self.model)
        challenger = self.challenger()
        if challenger is None or not serving:
            return None
        version, arm = challenger[0].version, challenger[1]
        watching = arm == PREVIOUS
        experiment = f"{self.model}:{version}"
        gate = self._gates.setdefault((serving, version, watching), Gate(
            self.config.gate_config, (1.0 - self.config.candidate_share - self.config.holdout_share,
                                      self.config.candidate_share), watching=watching))
        production = self.outcomes.outcomes(f"{self.model}:{serving}", PRODUCTION, experiment)
        other = self.outcomes.outcomes(f"{self.model}:{version}", arm, experiment)
        # watching, the roles turn: the new production is the one that must not be worse
        base, new = (other, production) if watching else (production, other)
        latency = self._latency(serving, version, arm)
        verdict = gate.judge(base, new, None if watching else latency)
        if self.last is None or (verdict.action, verdict.reason) != (self.last.action, self.last.reason):
            log.info("gate verdict", extra={"model": self.model, "model_version": str(version), "arm": arm,
                                            "action": verdict.action, "reason": verdict.reason})
        self.last = verdict
        await self._carry_out(verdict, serving, version)
        return verdict

    def _latency(self, serving: int, version: int, arm: str) -> tuple[float, float] | None:
        base = self.latency.p99_ms(f"{self.model}:{serving}", PRODUCTION)
        new = self.latency.p99_ms(f"{self.model}:{version}", arm)
        return (base, new) if base is not None and new is not None else None

    async def _carry_out(self, verdict: Verdict, serving: int, version: int) -> None:
        if verdict.action == "promote":
            await self.promotions.promote(self.model, version, "gate")
            self.watching = (version, serving)
        elif verdict.action == "rollback":
            await self.promotions.rollback(self.model, "gate")
            self.stopped[serving] = verdict.reason
            self.watching = None
        elif verdict.action == "stop":
            self.stopped[version] = verdict.reason
        else:
            return
        self.actions.append({"action": verdict.action, "version": serving if verdict.action == "rollback" else version,
                             "reason": verdict.reason, **verdict.figures})

    async def run(self, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        """Until cancelled; a look that fails is logged and the next one comes all the same."""
        while True:
            await sleep(self.config.gate_every_s)
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed promotion (a version that does not load) is retried
                log.exception("gate look failed", extra={"model": self.model})

    def status(self) -> dict:
        return {"model": self.model, "watching": list(self.watching) if self.watching else None,
                "stopped": {str(v): why for v, why in self.stopped.items()},
                "last": None if self.last is None else {"action": self.last.action, "reason": self.last.reason,
                                                        **self.last.figures},
                "actions": self.actions[-20:]}
