"""Fraud: an order scored by the ensemble (`alpha * trees + (1 - alpha) * MLP`, one ONNX graph
through the batcher) over its input vector (fraud_inputs), a decision from the merchant's
thresholds, and reasons: the trees' largest TreeSHAP contributions toward fraud, computed
here per order, in plain words. The scored order is then recorded as an `order` event
(event id `order-<order_id>`, so a retried call counts once), so the next order's velocity
counts it; a repeat of an order already scored gets the same answer back."""
from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..models.errors import InvalidArgument, NotFound, Unavailable
from ..features.service import FeatureService
from ..models import ModelRepository
from ..models.tree_ensemble import TreeEnsemble
from ..models.version import ModelVersion
from .fraud_inputs import FraudInputs, FraudOrder
from .fraud_reasons import reason_text
from .served_log import ServedLog
from .shadow import Shadow
from ..experiments.drift import REFERENCE_FILE, DriftWindows, Reference
from ..experiments.labels import LabelJoin

log = logging.getLogger(__name__)

MODEL = "fraud"
DECISIONS = ("APPROVE", "VERIFY", "REVIEW", "DECLINE")


@dataclass
class MerchantPolicy:
    """Score < verify_at: APPROVE; < review_at: VERIFY (3-D Secure, a phone check); above:
    `above_review` (REVIEW by a person, or DECLINE outright)."""
    verify_at: float = 0.3
    review_at: float = 0.7
    above_review: str = "REVIEW"

    def check(self, where: str) -> None:
        if not 0.0 <= self.verify_at <= self.review_at <= 1.0:
            raise ValueError(f"{where}: need 0 <= verify_at <= review_at <= 1, not {self.verify_at}, {self.review_at}")
        if self.above_review not in ("REVIEW", "DECLINE"):
            raise ValueError(f"{where}: above_review must be REVIEW or DECLINE, not {self.above_review!r}")

    def decide(self, score: float) -> str:
        if score < self.verify_at:
            return "APPROVE"
        if score < self.review_at:
            return "VERIFY"
        return self.above_review


@dataclass
class FraudConfig:
    verify_at: float = 0.3
    review_at: float = 0.7
    above_review: str = "REVIEW"
    reasons: int = 3  # the largest contributions toward fraud given back
    remember_orders: int = 100_000  # recent answers kept, so a retried order gets the same one
    # How the scored order reaches the event log and the velocity counters: "batched" (with the
    # other served events, within 50 ms, off the request path), "sync" (before the answer: the
    # next order is sure to count it, at the cost of a log write per call), or "off".
    record_orders: str = "batched"
    # batched: how often the scored orders are written; shorter keeps each write (which holds
    # the event loop while the store applies it) short, and the velocity lag with it
    record_every_ms: float = 10.0
    # drift: each version's last this many scored orders against its training reference (a few
    # days of orders: shorter finds a new pattern sooner, and reads noisier)
    drift_window: int = 5000
    # scored orders remembered for their chargebacks (performance drift; weeks of orders)
    label_orders: int = 200_000
    # merchant id -> any of verify_at, review_at, above_review (the rest from above)
    merchants: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.default = MerchantPolicy(self.verify_at, self.review_at, self.above_review)
        self.default.check("[fraud]")
        if self.record_orders not in ("batched", "sync", "off"):
            raise ValueError(f"[fraud] record_orders must be batched, sync or off, not {self.record_orders!r}")
        if self.record_every_ms <= 0:
            raise ValueError(f"[fraud] record_every_ms must be > 0, not {self.record_every_ms}")
        if self.reasons < 0:
            raise ValueError(f"[fraud] reasons must be >= 0, not {self.reasons}")
        if not 0 <= self.label_orders <= 10_000_000:
            raise ValueError(f"[fraud] label_orders must be in [0, 10000000], not {self.label_orders}")
        if not 100 <= self.drift_window <= 1_000_000:
            raise ValueError(f"[fraud] drift_window must be in [100, 1000000], not {self.drift_window}")
        self.policies: dict[str, MerchantPolicy] = {}
        for merchant, options in self.merchants.items():
            unknown = set(options) - {"verify_at", "review_at", "above_review"}
            if unknown:
                raise ValueError(f"[fraud.merchants.{merchant}]: unknown options {sorted(unknown)}")
            policy = MerchantPolicy(**{"verify_at": self.verify_at, "review_at": self.review_at,
                                       "above_review": self.above_review, **options})
            policy.check(f"[fraud.merchants.{merchant}]")
            self.policies[merchant] = policy

    def policy(self, merchant_id: str) -> MerchantPolicy:
        return self.policies.get(merchant_id, self.default)


@dataclass
class FraudArtifacts:
    """What a fraud model version ships beside its ONNX graph: the trees as arrays (for
    TreeSHAP), its input layout and blend weight."""
    trees: TreeEnsemble
    inputs: FraudInputs
    alpha: float
    reference: Reference | None = None  # training's inputs and scores, where the version shipped them

    @classmethod
    def load(cls, version_dir: Path) -> "FraudArtifacts":
        meta = json.loads((version_dir / "inputs.json").read_text())
        inputs = FraudInputs(tuple(meta["signals"]))
        if list(inputs.names) != meta["names"]:
            raise ValueError(f"{version_dir}: trained on inputs this server does not build "
                             f"(first difference at {_first_difference(inputs.names, meta['names'])}); retrain it")
        trees = TreeEnsemble.load(version_dir / "trees.npz")
        if trees.n_features != len(inputs.names):
            raise ValueError(f"{version_dir}: trees take {trees.n_features} inputs, the layout has {len(inputs.names)}")
        reference = Reference.load(version_dir / REFERENCE_FILE)
        if reference is not None and list(reference.names) != [*inputs.names, "score"]:
            raise ValueError(f"{version_dir}: {REFERENCE_FILE} describes other inputs than inputs.json")
        return cls(trees, inputs, float(meta["alpha"]), reference)


def _first_difference(a, b) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"input {i}: {x!r} here, {y!r} in the model"
    return f"length {len(a)} here, {len(b)} in the model"


@dataclass
class FraudReason:
    feature: str
    value: float
    contribution: float
    text: str


@dataclass
class FraudResult:
    score: float
    decision: str
    reasons: list[FraudReason]
    model_version: str
    request_id: str = ""


class FraudScorer:
    def __init__(self, repository: ModelRepository, features: FeatureService, config: FraudConfig | None = None,
                 shadow: Shadow | None = None):
        self.repository = repository
        self.features = features
        self.config = config or FraudConfig()
        self.shadow = shadow
        self.log = ServedLog(features, every_s=self.config.record_every_ms / 1000) \
            if self.config.record_orders == "batched" else None
        self._answers: OrderedDict[str, FraudResult] = OrderedDict()
        # per loaded version with a training reference: its live inputs and scores (metrics read them)
        self.drift = DriftWindows(self.config.drift_window, self.repository, MODEL)
        # scores joined to the chargebacks that come later (the server feeds it the applied events)
        self.labels = LabelJoin(self.config.label_orders)

    async def score(self, order: FraudOrder, merchant_id: str = "", request_id: str = "",
                    deadline: float | None = None) -> FraudResult:
        # the order's fields were checked where it came in (api/fraud.py); its time is checked
        # here, against this server's clock
        # one shop's order 1001 is not another's: answers and the recorded event are per merchant
        key = f"{merchant_id}/{order.order_id}" if merchant_id else order.order_id
        known = self._answers.get(key)
        if known is not None:
            return FraudResult(known.score, known.decision, known.reasons, known.model_version, request_id)
        try:
            version = self.repository.get(MODEL)
        except NotFound:
            raise Unavailable("no fraud model is loaded: build one with `hanzo train fraud`") from None
        artifacts: FraudArtifacts = version.artifacts
        if not order.timestamp:
            # now, not the store's clock: stamped at the clock, orders would never move it on
            order.timestamp = max(self.features.store.watermark, int(time.time() * 1000))
        elif order.timestamp > time.time() * 1000 + self.features.config.max_future_seconds * 1000:
            # the store would refuse its event, and its windows would read as empty
            raise InvalidArgument("order.timestamp", "is further ahead of this server's clock than "
                                                     f"{self.features.config.max_future_seconds:g} s")
        self.features.pseudonyms.fields(order)  # the store knows its card, email, IP, addresses by these
        x = await self._inputs(artifacts.inputs, order)
        out = await version.infer({"features": x}, deadline)
        score = float(out["score"][0, 0])
        if artifacts.reference is not None:
            self.drift.of(version.version_str, artifacts.reference).add(x[0], score)
        reasons = self._reasons(artifacts, x, artifacts.inputs.not_given(order)) if self.config.reasons else []
        result = FraudResult(score, self.config.policy(merchant_id).decide(score), reasons, version.version_str,
                             request_id)
        self._remember(key, result)
        self.labels.record(order.order_id, version.version_str, result.decision, score)
        if self.shadow is not None and self.shadow.enabled:
            self.shadow.offer(MODEL, self.repository.candidate(MODEL), request_id,
                              {"primary_version": version.version, "primary": round(score, 6)},
                              lambda candidate, pause: self._shadow_score(candidate, artifacts.inputs, x, order,
                                                                          merchant_id))
        if self.log is not None:
            self.log.record(self._event(order, merchant_id, request_id, result))
        elif self.config.record_orders == "sync" and self.features.is_open:
            await self.features.ingest([self._event(order, merchant_id, request_id, result)])
        return result

    async def _shadow_score(self, candidate: ModelVersion, inputs: FraudInputs, x: np.ndarray, order: FraudOrder,
                            merchant_id: str) -> dict:
        """The candidate's score for the order, from the primary's own inputs where the
        candidate reads the same ones (read again, the order itself may have been recorded
        meanwhile and counted in its velocities)."""
        theirs: FraudInputs = candidate.artifacts.inputs
        same = list(theirs.names) == list(inputs.names) and list(theirs.signals) == list(inputs.signals)
        features = x if same else await self._inputs(theirs, order)
        score = float((await candidate.infer({"features": features}))["score"][0, 0])
        return {"score": round(score, 6), "decision": self.config.policy(merchant_id).decide(score),
                "inputs": "shared" if same else "read again"}

    async def _inputs(self, inputs: FraudInputs, order: FraudOrder) -> np.ndarray:
        """Read before the order is recorded: velocity counts the orders before this one."""
        blocks = [await self.features.read(entity, keys, list(names), as_of=order.timestamp)
                  for entity, keys, names in inputs.reads([order])]
        network = await self.features.network([order.event()])
        return inputs.assemble([order], blocks, network)

    def _reasons(self, artifacts: FraudArtifacts, x: np.ndarray, not_given: np.ndarray) -> list[FraudReason]:
        contributions = np.where(not_given, 0.0, artifacts.trees.contributions(x)[0, :-1])
        names = artifacts.inputs.names
        top = [i for i in np.argsort(-contributions, kind="stable")[:self.config.reasons] if contributions[i] > 0]
        return [FraudReason(names[i], float(x[0, i]), float(contributions[i]), reason_text(names[i], float(x[0, i])))
                for i in top]

    def forget_answers(self) -> None:
        """Drop the answers kept for repeated orders (an erasure: none may outlive the shopper's)."""
        self._answers.clear()

    def _remember(self, order_id: str, result: FraudResult) -> None:
        self._answers[order_id] = result
        while len(self._answers) > self.config.remember_orders:
            self._answers.popitem(last=False)

    def _event(self, order: FraudOrder, merchant_id: str, request_id: str, result: FraudResult) -> dict:
        event = order.event(merchant_id)
        context = event["context"]
        context.update({"fraud_score": f"{result.score:.6f}", "fraud_decision": result.decision,
                        "model_version": f"{MODEL}:{result.model_version}"})
        if request_id:
            context["request_id"] = request_id
        if merchant_id:
            context["merchant_id"] = merchant_id
        return event

    async def close(self) -> None:
        if self.log is not None:
            await self.log.flush()
