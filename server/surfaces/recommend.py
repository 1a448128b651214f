"""Recommend: personalised top-k products from the two-tower model, ANN retrieval over the
item embeddings, blended with the customer's repeats, co-visitation with their recent and
anchor products, what usually comes next, and popularity (weights learned on validation, in
the model version's blend.json); filtered by stock and exclusions, spread across categories,
with an exploration slot; every list served logged as a recommendation_shown event."""
from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hanzo import _native

from ..models.errors import NotFound, Unavailable
from ..features.service import FeatureService
from ..models import ModelRepository
from ..models.version import ModelVersion
from ..retrieval.ann import ItemIndex
from .recommend_inputs import (AFFINITY, HISTORY, LIFE, SESSION_SEQUENCES, USER_SCALARS, USER_SEQUENCES, UserInputs,
                               dense_inputs, drift_rows, history_items, index_sequences, lapsed_moment)
from .recommend_signals import SIGNALS, Signals
from .served_log import ServedLog
from .shadow import Shadow
from ..experiments.arm_latency import ArmLatency
from ..experiments.arms import CANDIDATE, HOLDOUT, PRODUCTION
from ..experiments.config import ExperimentConfig
from ..experiments.drift import REFERENCE_FILE, DriftWindows, Reference

log = logging.getLogger(__name__)

MODEL = "recommend"
SIGNAL_SOURCE = {"two_tower": "two_tower", "repeat": "repeat", "co_visitation": "co_visitation",
                 "transition": "co_visitation", "popularity": "popularity"}


@dataclass
class RecommendArtifacts:
    """What a recommend model version ships beside its user tower."""
    product_ids: list[str]
    index_of: dict[str, int]
    embeddings: np.ndarray
    index: ItemIndex
    signals: Signals
    popular: np.ndarray  # item indices, most popular first
    weights: dict[str, float]
    _blocked: np.ndarray | None = None
    _blocked_revision: int = -1
    _blocked_count: int = 0
    _roots: np.ndarray | None = None
    _roots_revision: int = -1
    reference: Reference | None = None  # the inputs and scores training saw, for drift

    def __post_init__(self) -> None:
        self.embeddings = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        s = self.signals
        self.plan = _native.BlendPlan(self.embeddings, np.ascontiguousarray(s.knn_index, np.int64),
                                      np.ascontiguousarray(s.knn_weight, np.float64),
                                      np.ascontiguousarray(s.popularity, np.float64),
                                      np.ascontiguousarray(s.next_pointers, np.int64),
                                      np.ascontiguousarray(s.next_items, np.int64),
                                      np.ascontiguousarray(s.next_counts, np.float64), s.window)
        self.weight_vector = np.asarray([self.weights.get(name, 0.0) for name in SIGNALS], np.float64)

    @classmethod
    def load(cls, version_dir: Path) -> "RecommendArtifacts":
        product_ids = json.loads((version_dir / "items.json").read_text())
        embeddings = np.load(version_dir / "items.npy")
        with np.load(version_dir / "signals.npz") as arrays:
            signals = Signals.from_arrays(arrays)
        blend = json.loads((version_dir / "blend.json").read_text())
        index = ItemIndex.load(version_dir / "index.bin", embeddings.shape[1], len(product_ids))
        return cls(product_ids, {p: i for i, p in enumerate(product_ids)}, embeddings, index, signals,
                   np.argsort(-signals.popularity, kind="stable")[:500], blend["weights"],
                   reference=Reference.load(version_dir / REFERENCE_FILE))

    def roots(self, catalog) -> np.ndarray:
        """Root category per item as a small integer, -1 unknown (cached per product revision)."""
        if self._roots is None or self._roots_revision != catalog.product_revision:
            known = catalog.roots
            roots = np.full(len(self.product_ids), -1, dtype=np.int64)
            for row, product in enumerate(self.product_ids):
                category = (catalog.products.get(product) or {}).get("category")
                if category:
                    roots[row] = known.get(category[0], -1)
            self._roots, self._roots_revision = roots, catalog.product_revision
        return self._roots

    def out_of_stock(self, catalog) -> tuple[np.ndarray, int]:
        """uint8 mask of the items the catalog says are out of stock, and their number (cached
        per stock revision; never written to)."""
        if self._blocked is None or self._blocked_revision != catalog.stock_revision:
            mask = np.zeros(len(self.product_ids), dtype=np.uint8)
            rows = [self.index_of[p] for p in catalog.out_of_stock if p in self.index_of]
            mask[rows] = 1
            self._blocked, self._blocked_count, self._blocked_revision = mask, int(mask.sum()), catalog.stock_revision
        return self._blocked, self._blocked_count

    def blocked(self, catalog, products: list[str]) -> tuple[np.ndarray, int]:
        """The out-of-stock mask with `products` blocked too, and its number of ones; the
        shared mask itself when nothing is added (the common request copies nothing)."""
        mask, count = self.out_of_stock(catalog)
        rows = [row for row in (self.index_of.get(p) for p in products) if row is not None and not mask[row]]
        if not rows:
            return mask, count
        mask = mask.copy()
        mask[rows] = 1
        return mask, count + len(set(rows))


@dataclass
class RecommendQuery:
    k: int
    placement: str = "home"
    user_id: str = ""
    session_id: str = ""
    anchors: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    request_id: str = ""
    merchant_id: str = ""


@dataclass
class Recommendation:
    product_id: str
    score: float
    source: str


@dataclass
class RecommendResult:
    items: list[Recommendation]
    model_version: str
    fallback: bool = False
    fallback_reason: str = ""
    arm: str = PRODUCTION  # the experiment's arm the shopper is in (server/experiments/arms.py)
    experiment: str = ""  # the challenger's version while there is one ("recommend:2"): whom the arms compare


@dataclass
class RecommendConfig:
    candidates: int = 100  # from the ANN index, before the blend
    # HNSW search depth: recall against exact search for time (loadtest/recommend_scale.py
    # measures both; docs/results.md, recommend)
    ann_ef: int = 150
    max_category_share: float = 0.5  # no more than this share of a list from one root category
    exploration: bool = True  # one slot (the last, for k >= 4) from further down the ranking
    log_shown: bool = True
    drift_window: int = 5000  # drift: the newest lists ranked by the model whose inputs are measured

    def __post_init__(self) -> None:
        if not 100 <= self.drift_window <= 1_000_000:
            raise ValueError(f"[recommend] drift_window must be in [100, 1000000], not {self.drift_window}")
        if self.candidates < 1:
            raise ValueError(f"recommend candidates must be >= 1, not {self.candidates}")
        if self.ann_ef < 1:
            raise ValueError(f"recommend ann_ef must be >= 1, not {self.ann_ef}")
        if not 0 < self.max_category_share <= 1:
            raise ValueError(f"recommend max_category_share must be in (0, 1], not {self.max_category_share}")


class Recommender:
    def __init__(self, repository: ModelRepository, features: FeatureService,
                 config: RecommendConfig | None = None, shadow: Shadow | None = None,
                 experiment: ExperimentConfig | None = None) -> None:
        self.repository = repository
        self.features = features
        self.config = config or RecommendConfig()
        self.shown = ServedLog(features) if self.config.log_shown else None
        self.shadow = shadow
        self.experiment = experiment or ExperimentConfig()
        self.arm_latency = ArmLatency()
        # the version the candidate's share gets, and its arm's name: the candidate, or, while
        # the gate watches a version it promoted, the version that one replaced (experiments/runner.py)
        self.challenger: Callable[[], tuple[ModelVersion, str] | None] = self._candidate
        # told of every list served (the experiments' outcome join), in process: never from
        # events a caller could send
        self.on_shown: Callable[[dict], None] | None = None
        # per loaded version with a training reference: the shoppers it ranked for, and its scores
        self.drift = DriftWindows(self.config.drift_window, self.repository, MODEL)

    def _candidate(self) -> tuple[ModelVersion, str] | None:
        candidate = self.repository.candidate(MODEL)
        return (candidate, CANDIDATE) if candidate is not None else None

    async def recommend(self, query: RecommendQuery, deadline: float | None = None) -> RecommendResult:
        try:
            version = self.repository.get(MODEL)
        except NotFound:
            raise Unavailable("no recommend model is loaded: build one with `hanzo train recommend`") from None
        arm, experiment = PRODUCTION, ""
        if self.experiment.enabled:
            started = time.perf_counter()
            challenger = self.challenger()
            arm = self.experiment.arm(MODEL, query.merchant_id, query.user_id or query.session_id,
                                      challenger[0].version if challenger is not None else None)
            if arm == CANDIDATE:
                version, arm = challenger
            experiment = f"{MODEL}:{challenger[0].version}" if challenger is not None else ""
        reads = await self._read(query) if arm != HOLDOUT else None
        result = await self._answer(version, query, reads, deadline) if reads is not None else \
            self._held_out(version, query)
        result.arm, result.experiment = arm, experiment
        if self.experiment.enabled:
            self.arm_latency.record(f"{MODEL}:{version.version}", arm, experiment, time.perf_counter() - started)
        request_id = query.request_id
        if self.shown is not None:
            shown = self._shown_event(query, result)
            request_id = shown["payload"]["request_id"]  # the id the outcomes will be joined by
            self.shown.record(shown)
            if self.on_shown is not None:
                self.on_shown(shown)
        if self.shadow is not None and self.shadow.enabled and arm == PRODUCTION:
            self.shadow.offer(MODEL, self.repository.candidate(MODEL), request_id,
                              {"primary_version": version.version, "primary": [i.product_id for i in result.items]},
                              lambda candidate, pause: self._shadow_answer(candidate, query, reads, pause))
        return result

    async def _shadow_answer(self, candidate: ModelVersion, query: RecommendQuery, reads: tuple,
                             pause: Callable[[], Awaitable[None]]) -> dict:
        """The candidate's list from the primary's own feature reads (the store has moved on
        since), each step in a gap between calls."""
        result = await self._answer(candidate, query, reads, None, pause)
        return {"items": [i.product_id for i in result.items], "scores": [round(i.score, 5) for i in result.items]}

    async def _answer(self, version: ModelVersion, query: RecommendQuery, reads: tuple, deadline: float | None,
                      pause: Callable[[], Awaitable[None]] | None = None) -> RecommendResult:
        """The ranking `version` gives `query` from the store's `reads`; nothing recorded."""
        art: RecommendArtifacts = version.artifacts
        if art is None:
            raise Unavailable(f"model {MODEL!r} version {version.version_str} ships no recommend artifacts")
        bought, viewed, dense = reads
        inputs = UserInputs(index_sequences([bought], art.index_of), index_sequences([viewed], art.index_of), dense)
        history = history_items(bought, viewed, art.index_of)
        anchors = [art.index_of[p] for p in query.anchors if p in art.index_of]
        blocked, blocked_count = art.blocked(self.features.store.catalog, list(query.exclude) + list(query.anchors))
        if not history and not anchors:
            items = self._popular(art, blocked, query.k)
            return RecommendResult(items, version.version_str, True, "cold start: no history, session or anchors")
        if pause is not None:
            await pause()
        user = (await version.infer(inputs.as_feeds(), deadline))["embedding"][0]
        if pause is not None:
            await pause()
        items = self._blend(art, user, history, anchors, blocked, blocked_count, query)
        if art.reference is not None and pause is None and items:  # a served answer, not a shadow copy
            first = art.index_of.get(items[0].product_id)
            if first is not None:  # the score: the user tower's affinity for the first product shown
                self.drift.of(version.version_str, art.reference).add(
                    drift_rows(inputs)[0], float(art.embeddings[first] @ user))
        return RecommendResult(items, version.version_str)

    def _held_out(self, version: ModelVersion, query: RecommendQuery) -> RecommendResult:
        """The holdout arm's list: the most popular products the shopper may be shown, the
        same for everyone, with nothing of the shopper read."""
        art: RecommendArtifacts = version.artifacts
        if art is None:
            raise Unavailable(f"model {MODEL!r} version {version.version_str} ships no recommend artifacts")
        blocked, _ = art.blocked(self.features.store.catalog, list(query.exclude) + list(query.anchors))
        return RecommendResult(self._popular(art, blocked, query.k), version.version_str)

    async def _read(self, query: RecommendQuery) -> tuple[list[str], list[str], np.ndarray]:
        """What the store holds for the shopper: products bought and viewed, newest first, and
        the user tower's dense inputs."""
        bought, viewed, dense = [], [], None
        if query.user_id:
            block = await self.features.read("user", [query.user_id], list(USER_SCALARS) + [AFFINITY] + list(LIFE) +
                                             list(USER_SEQUENCES))
            bought = block.sequences["user_recent_bought"][0]
            viewed = block.sequences["user_recent_viewed"][0]
            values, layout = block.values, block.layout
            moment = lapsed_moment(values, layout)
            if moment is not None:
                past = await self.features.read("user", [query.user_id], list(USER_SCALARS) + [AFFINITY], moment)
                values, layout = past.values, past.layout
            dense = dense_inputs(values, layout, [query.placement])
        if query.session_id:
            block = await self.features.read("session", [query.session_id], list(SESSION_SEQUENCES))
            session_viewed = block.sequences["session_recent_viewed"][0]
            seen = set(session_viewed)
            viewed = (session_viewed + [p for p in viewed if p not in seen])[:HISTORY]
        if dense is None:
            dense = dense_inputs(np.zeros((1, 0), np.float32), [], [query.placement])
        return bought, viewed, dense

    def _blend(self, art: RecommendArtifacts, user: np.ndarray, history: list[int], anchors: list[int],
               blocked: np.ndarray, blocked_count: int, query: RecommendQuery) -> list[Recommendation]:
        art.index.ef = self.config.ann_ef
        labels, _ = art.index.search(user, self.config.candidates, blocked, blocked_count)
        candidates, score, sources, _ = art.plan.score(labels[0], history, anchors, art.popular[:50], blocked, user,
                                                       art.weight_vector)
        if len(candidates) == 0:
            return []
        return self._arrange(art, candidates, score, sources, query)

    def _arrange(self, art: RecommendArtifacts, candidates: np.ndarray, score: np.ndarray, sources: np.ndarray,
                 query: RecommendQuery) -> list[Recommendation]:
        """The top k under the category cap, the last slot given to exploration. Only the head
        of the ranking is looked at: enough for the cap to bite and for exploration to draw."""
        k = query.k
        head = min(len(candidates), 6 * k)
        top = np.argpartition(-score, head - 1)[:head] if head < len(candidates) else np.arange(len(candidates))
        top = top[np.argsort(-score[top], kind="stable")]
        explore = self.config.exploration and k >= 4 and len(top) > k
        room = k - 1 if explore else k
        cap = max(1, math.ceil(self.config.max_category_share * k))
        roots = art.roots(self.features.store.catalog)[candidates[top]]
        per_category: dict[int, int] = {}

        def fits(root: int) -> bool:
            return root < 0 or per_category.get(root, 0) < cap

        def take(j: int, root: int, source: str) -> None:
            picked.append((j, source))
            if root >= 0:
                per_category[root] = per_category.get(root, 0) + 1

        picked: list[tuple[int, str]] = []
        rest: list[tuple[int, int]] = []
        for j, root in zip(top.tolist(), roots.tolist()):
            if len(picked) < room and fits(root):
                take(j, root, SIGNAL_SOURCE[SIGNALS[sources[j]]])
            else:
                rest.append((j, root))
        if explore:
            # Drawn from further down among what the cap allows; the draw is keyed by the
            # request, so a retried call gets the same list.
            allowed = [entry for entry in rest[:2 * k] if fits(entry[1])]
            if allowed:
                entry = allowed[zlib.crc32((query.request_id or query.user_id or query.session_id).encode())
                                % len(allowed)]
                rest.remove(entry)
                take(entry[0], entry[1], "exploration")
        # Slots still empty: in ranking order, within the cap first, beyond it only when the
        # candidates lack the variety to fill the list otherwise.
        for within_cap in (True, False):
            for j, root in list(rest):
                if len(picked) >= k:
                    break
                if not within_cap or fits(root):
                    rest.remove((j, root))
                    take(j, root, SIGNAL_SOURCE[SIGNALS[sources[j]]])
        return [Recommendation(art.product_ids[candidates[j]], float(score[j]), source) for j, source in picked[:k]]

    def _popular(self, art: RecommendArtifacts, blocked: np.ndarray, k: int) -> list[Recommendation]:
        out = []
        for item in art.popular:
            if not blocked[item]:
                out.append(Recommendation(art.product_ids[item], float(art.signals.popularity[item]), "popularity"))
                if len(out) == k:
                    break
        return out

    def _shown_event(self, query: RecommendQuery, result: RecommendResult) -> dict:
        now = self.shown.now()
        request_id = query.request_id or self.shown.auto_id(now)
        # a request id is the merchant's: two shops' "r1" are two events
        shown_id = f"shown-{query.merchant_id}/{request_id}" if query.merchant_id else f"shown-{request_id}"
        payload = {"product_ids": [item.product_id for item in result.items], "request_id": request_id,
                   "model_version": f"{MODEL}:{result.model_version}", "placement": query.placement}
        if self.experiment.enabled:  # without one every list is production's: nothing to log
            payload.update(arm=result.arm, experiment=result.experiment)
        return {"event_id": shown_id, "event_type": "recommendation_shown", "timestamp": now,
                "user_id": query.user_id or None, "session_id": query.session_id or f"user:{query.user_id}",
                "payload": payload, "context": {"merchant_id": query.merchant_id} if query.merchant_id else {}}

    async def close(self) -> None:
        if self.shown is not None:
            await self.shown.flush()
