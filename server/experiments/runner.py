"""The gate at work on a running server: every `gate_every_s`, Recommend's candidate arm is
judged against production's (server/experiments/gate.py) and the verdict carried out.

- `promote`: the production pointer moves to the candidate (Promotions, as `hanzo models
  promote` does, recorded as by "gate"). The version it replaced stays loaded, and the
  candidate's share of shoppers is now served by it (arm `previous`): the gate watches the new
  production against it, with a fresh test, until the next candidate arrives.
- `rollback` (while watching): the pointer goes back, and the version is stopped.
- `stop`: the candidate is stopped: its share of shoppers goes back to production, and the
  gate never promotes it. Stopped versions are remembered for the server's life; a restart
  judges them again from nothing. A version the gate promoted that a person rolls back is
  stopped too.
A switch happens only if the version judged still serves when its turn comes (a person's
promotion in between wins). The gate judges what this server saw: with several replicas,
each sees only the outcomes it ingested, so run the gate on one of them.
Each verdict that changes is logged; the latest is in `status()`."""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from .arm_latency import ArmLatency
from .arms import CANDIDATE, PREVIOUS, PRODUCTION
from .config import ExperimentConfig
from ..models.errors import NotFound
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
        self.promoted: set[int] = set()  # versions the gate made production
        self._gates: dict[tuple[int, int, bool], Gate] = {}
        self.last: Verdict | None = None
        self.actions: deque[dict] = deque(maxlen=50)  # promotions, stops and rollbacks, newest last

    def challenger(self) -> tuple[Any, str] | None:
        """The version the candidate's share of shoppers gets now, and its arm's name."""
        serving = self.repository.serving_version(self.model)
        candidate = self.repository.candidate(self.model)
        newer = candidate is not None and candidate.version not in self.stopped
        if self.watching is not None and self.watching[0] == serving and not newer:
            try:
                return self.repository.get(self.model, str(self.watching[1])), PREVIOUS
            except Exception:  # noqa: BLE001 - not loaded now (step() ends the watch where it is gone)
                return None
        return (candidate, CANDIDATE) if newer else None

    def _notice_moves(self, serving: int) -> None:
        """Production moved by someone else: a version the gate promoted that no longer serves
        was rolled back by a person, so the gate never promotes it again; a watch whose
        version no longer serves, or whose replaced version is gone, ends; tests of pairs that
        can no longer be compared go."""
        candidate = self.repository.candidate(self.model)
        if candidate is not None and candidate.version in self.promoted and candidate.version not in self.stopped:
            self.stopped[candidate.version] = "rolled back after the gate promoted it"
        if self.watching is not None:
            try:
                gone = self.watching[0] != serving or self.repository.get(self.model, str(self.watching[1])) is None
            except NotFound:
                gone = True
            if gone:
                self.watching = None
        self._gates = {k: g for k, g in self._gates.items() if k[0] == serving}

    async def step(self) -> Verdict | None:
        """One look; the verdict, None when there is nothing to judge."""
        serving = self.repository.serving_version(self.model)
        if not serving:
            return None
        self._notice_moves(serving)
        challenger = self.challenger()
        if challenger is None:
            return None
        version, arm = challenger[0].version, challenger[1]
        watching = arm == PREVIOUS
        experiment = f"{self.model}:{version}"
        self.outcomes.keep({experiment})
        self.latency.keep({experiment})
        shares = (1.0 - self.config.candidate_share - self.config.holdout_share, self.config.candidate_share)
        # watching, the roles turn: the new production is the one that must not be worse
        gate = self._gates.setdefault((serving, version, watching), Gate(
            self.config.gate_config, shares[::-1] if watching else shares, watching=watching))
        production = self.outcomes.outcomes(f"{self.model}:{serving}", PRODUCTION, experiment)
        other = self.outcomes.outcomes(f"{self.model}:{version}", arm, experiment)
        base, new = (other, production) if watching else (production, other)
        verdict = gate.judge(base, new, None if watching else self._latency(serving, version, arm, experiment))
        if self.last is None or (verdict.action, verdict.reason) != (self.last.action, self.last.reason):
            log.info("gate verdict", extra={"model": self.model, "model_version": str(version), "arm": arm,
                                            "action": verdict.action, "reason": verdict.reason})
        self.last = verdict
        await self._carry_out(verdict, serving, version)
        return verdict

    def _latency(self, serving: int, version: int, arm: str, experiment: str) -> tuple[float, float] | None:
        base = self.latency.p99_ms(f"{self.model}:{serving}", PRODUCTION, experiment)
        new = self.latency.p99_ms(f"{self.model}:{version}", arm, experiment)
        return (base, new) if base is not None and new is not None else None

    async def _carry_out(self, verdict: Verdict, serving: int, version: int) -> None:
        if verdict.action == "promote":  # only if what it judged still serves (a person may have moved it)
            await self.promotions.promote(self.model, version, "gate", expected=serving)
            self.watching = (version, serving)
            self.promoted.add(version)
        elif verdict.action == "rollback":
            await self.promotions.rollback(self.model, "gate", expected=serving)
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
                "actions": list(self.actions)}
