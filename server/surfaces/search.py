"""Search: the query corrected and expanded, BM25 over the live catalogue (or the caller's
candidates), then the neural re-ranker over the candidates' stored product states, conditioned
on the user; every answer logged as a `search` event.

The lexical index, the spelling vocabulary and the re-ranker's product rows follow the
catalogue: a product added or changed is indexed and encoded (by the model version's product
encoder) on the next call, not at the next training."""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..models.errors import NotFound, Unavailable
from ..features.catalog import CatalogState
from ..features.definitions import CATEGORY_SLOTS
from ..features.service import FeatureService
from ..models import ModelRepository
from ..search.lexical import LexicalIndex
from ..search.rerank_inputs import (PRODUCT_FEATURES, PRODUCT_LEN, lexical_features, product_features_row,
                                    drift_rows, product_ids_row, query_ids, user_features)
from ..experiments.drift import REFERENCE_FILE, DriftWindows, Reference
from ..search.spelling import SpellingCorrector
from ..search.synonyms import Synonyms
from ..search.text import product_text
from ..search.understanding import understand
from .served_log import ServedLog

log = logging.getLogger(__name__)

MODEL = "search"
ENCODER = "search_encoder"  # the product encoder, one version per scorer version
COMPANIONS = {MODEL: (ENCODER,)}  # models promoted and rolled back with the scorer (models/promotion.py)
AFFINITY = "user_category_affinity_30d"


@dataclass
class SearchArtifacts:
    """What a search model version ships beside its scorer (model.onnx): the product states
    its encoder computed over the training catalogue, and learned synonyms. The encoder itself
    is the same version of the `search_encoder` model, run through the repository for products
    that arrive later."""
    state_of: dict[str, int]
    states: np.ndarray  # float32 [products, PRODUCT_LEN, dim]
    synonyms: Synonyms
    reference: Reference | None = None  # the inputs and scores training saw, for drift

    @classmethod
    def load(cls, version_dir: Path) -> "SearchArtifacts":
        ids = json.loads((version_dir / "products.json").read_text())
        pairs = json.loads((version_dir / "synonyms.json").read_text()) if (version_dir / "synonyms.json").exists() \
            else []
        table = Synonyms()
        for a, b, weight in pairs:
            table.add_pair(a, b, weight)
        return cls({p: i for i, p in enumerate(ids)}, np.load(version_dir / "states.npy", mmap_mode="r"), table,
                   Reference.load(version_dir / REFERENCE_FILE))


class ProductRows:
    """The re-ranker's per-product inputs, one row per product, appended as products arrive
    or change: word ids, features, and the encoder's states."""

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.row_of: dict[str, int] = {}
        self.ids = np.zeros((capacity, PRODUCT_LEN), np.int64)
        self.features = np.zeros((capacity, PRODUCT_FEATURES), np.float32)
        self.states = np.zeros((capacity, PRODUCT_LEN, dim), np.float32)
        self.count = 0

    def _grow(self, needed: int) -> None:
        if needed <= len(self.ids):
            return
        size = max(needed, 2 * len(self.ids))
        for name in ("ids", "features", "states"):
            old = getattr(self, name)
            new = np.zeros((size,) + old.shape[1:], old.dtype)
            new[:self.count] = old[:self.count]
            setattr(self, name, new)

    def compact(self, product_ids: list[str]) -> None:
        """Keep only `product_ids`' rows, in that order (after the index merged its slots), so
        rows left behind by changed products do not pile up."""
        order = np.fromiter((self.row_of[p] for p in product_ids), np.int64, len(product_ids))
        self.ids, self.features, self.states = self.ids[order], self.features[order], self.states[order]
        self.row_of = {p: i for i, p in enumerate(product_ids)}
        self.count = len(product_ids)

    def put(self, products: list[dict], catalog: CatalogState, artifacts: SearchArtifacts, fresh: bool) -> np.ndarray:
        """Rows for `products`; returns the rows whose states the encoder must still compute
        (`fresh`: the records changed since the version's states were made)."""
        if not products:
            return np.zeros(0, np.int64)
        self._grow(self.count + len(products))
        rows = np.arange(self.count, self.count + len(products))
        to_encode = []
        for row, product in zip(rows, products):
            product_id = product["product_id"]
            self.row_of[product_id] = int(row)
            self.ids[row] = product_ids_row(product)
            slot = catalog.category_slot(product_id)
            self.features[row] = product_features_row(product, slot if slot is not None and slot < CATEGORY_SLOTS
                                                      else None)
            known = None if fresh else artifacts.state_of.get(product_id)
            if known is not None:
                self.states[row] = artifacts.states[known]
            else:
                to_encode.append(row)
        self.count += len(products)
        return np.asarray(to_encode, np.int64)


@dataclass
class SearchConfig:
    # BM25 depth the re-ranker sees: deeper costs latency for every call and pays only for a
    # re-ranker strong enough to lift what BM25 ranks low (docs/results.md, search)
    candidates: int = 100
    max_caller_candidates: int = 1000
    log_searches: bool = True
    # Configured synonyms, merged with the model version's learned ones.
    synonyms: list[list[str]] = field(default_factory=list)
    drift_window: int = 5000  # candidates shown, the newest, whose inputs drift is measured on

    def __post_init__(self) -> None:
        if not 100 <= self.drift_window <= 1_000_000:
            raise ValueError(f"[search] drift_window must be in [100, 1000000], not {self.drift_window}")
        if self.candidates < 1:
            raise ValueError(f"search candidates must be >= 1, not {self.candidates}")
        if self.max_caller_candidates < 1:
            raise ValueError(f"search max_caller_candidates must be >= 1, not {self.max_caller_candidates}")
        for pair in self.synonyms:
            if len(pair) != 2 or not all(isinstance(p, str) and p.strip() for p in pair):
                raise ValueError(f"search synonyms: each entry is a pair of phrases, not {pair!r}")


@dataclass
class SearchQuery:
    query: str
    k: int
    user_id: str = ""
    session_id: str = ""
    candidates: list[str] = field(default_factory=list)
    request_id: str = ""
    merchant_id: str = ""


@dataclass
class SearchHit:
    product_id: str
    score: float
    source: str


@dataclass
class SearchResult:
    items: list[SearchHit]
    corrected_query: str
    model_version: str


class CatalogView:
    """The lexical index and the spelling vocabulary over the live catalogue, caught up with
    its changes on each call. The catalogue is the store's of the moment (`source()`): a store
    rebuilt by an erasure or a retention pass brings a catalogue object of its own, and the
    index is built again over it."""

    def __init__(self, source: Callable[[], CatalogState]) -> None:
        self._source = source
        self.index = LexicalIndex()
        self.corrector = SpellingCorrector({})
        self.position = 0
        self.generation: tuple = ()  # (the catalogue object, its generation) the index was built over
        self.revision = -1

    @property
    def catalog(self) -> CatalogState:
        return self._source()

    def snapshot(self) -> tuple:
        """What a build reads of the catalog, taken on the event loop (the thread that changes it)."""
        catalog = self.catalog
        return ((id(catalog), catalog.generation), catalog.product_revision, catalog.change_count,
                list(catalog.products.values()))

    @staticmethod
    def compute(snapshot: tuple) -> tuple:
        """The heavy part of a build (seconds for 50k products): safe on another thread."""
        products = snapshot[3]
        return LexicalIndex.build(products), SpellingCorrector.from_texts(product_text(p) for p in products)

    def install(self, snapshot: tuple, built: tuple) -> None:
        """Swap a build in, on the event loop, all at once; changes since its snapshot are
        caught up on the next call."""
        self.index, self.corrector = built
        self.generation, self.revision, self.position = snapshot[:3]

    def build(self) -> None:
        """Everything from scratch, here and now (after the catalog was restored)."""
        snapshot = self.snapshot()
        self.install(snapshot, self.compute(snapshot))

    def catch_up(self) -> list[dict]:
        """Index the products changed since the last call; returns their records."""
        catalog = self.catalog
        if (id(catalog), catalog.generation) != self.generation:
            self.build()
            return list(catalog.products.values())
        if catalog.product_revision == self.revision:
            return []
        changed, self.position = catalog.changes_since(self.position)
        self.revision = catalog.product_revision
        products = [catalog.products[p] for p in changed if p in catalog.products]
        self.index.upsert(products)
        self.corrector.add_texts(product_text(p) for p in products)
        return products


class Searcher:
    def __init__(self, repository: ModelRepository, features: FeatureService, config: SearchConfig | None = None):
        self.repository = repository
        self.features = features
        self.config = config or SearchConfig()
        self.view = CatalogView(lambda: features.store.catalog)
        self.configured_synonyms = Synonyms.from_pairs([tuple(p) for p in self.config.synonyms])
        self.log = ServedLog(features) if self.config.log_searches else None
        self.on_served: Callable[[dict], None] | None = None  # each logged search, as it is logged
        # per loaded version with a training reference: the candidates it showed, and their scores
        self.drift = DriftWindows(self.config.drift_window, self.repository, MODEL)
        self._rows: ProductRows | None = None
        self._rows_for: tuple = (None, -1)  # the artifacts and catalog generation the rows were built with
        # Index slot -> row of the re-ranker's inputs, so a query maps its candidates without
        # a Python loop; extended as slots are added, rebuilt when a merge renumbers them.
        self._slot_rows = np.zeros(0, np.int64)
        self._slot_layout: tuple | None = None
        self._ready = False
        self._starting: asyncio.Future | None = None
        self._syncing = asyncio.Lock()
        self._merged, self._synonyms_for = self.configured_synonyms, None

    async def start(self) -> None:
        """Build the index over the catalogue off the event loop (seconds for 50k products);
        a search arriving meanwhile waits for it rather than building its own."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._build())
        await asyncio.shield(self._starting)

    async def _build(self) -> None:
        snapshot = self.view.snapshot()
        built = await asyncio.get_running_loop().run_in_executor(None, CatalogView.compute, snapshot)
        self.view.install(snapshot, built)
        self._ready = True

    def _model(self):
        try:
            version = self.repository.get(MODEL)
        except NotFound:
            return None, None
        return version, version.artifacts

    async def _sync(self, version, artifacts: SearchArtifacts | None) -> ProductRows | None:
        """Catch the index up with the catalog and keep the re-ranker's rows in step: built
        whole for a new model version or a restored catalog, extended for changed products,
        their states computed by the version's product encoder. One call at a time: a call
        arriving meanwhile waits, so no search sees rows still waiting for their states."""
        async with self._syncing:
            changed = self.view.catch_up()
            if artifacts is None:
                return None
            catalog = self.view.catalog
            if self._rows is None or self._rows_for[0] is not artifacts or self._rows_for[1] != self.view.generation:
                rows = ProductRows(artifacts.states.shape[2], max(len(catalog.products), 1))
                pending = rows.put(list(catalog.products.values()), catalog, artifacts, fresh=False)
            else:
                rows = self._rows
                pending = rows.put(changed, catalog, artifacts, fresh=True)
            if len(pending):
                await self._encode(version, rows, pending)
            self._rows, self._rows_for = rows, (artifacts, self.view.generation)
            index = self.view.index
            layout = (index.layout, id(index), id(rows))
            if layout != self._slot_layout:
                rows.compact(index.product_ids)  # the slots were renumbered: rows follow them
                self._slot_rows = np.arange(len(index.product_ids), dtype=np.int64)
                self._slot_layout = layout
            elif len(self._slot_rows) < len(index.product_ids):
                added = index.product_ids[len(self._slot_rows):]
                self._slot_rows = np.concatenate([self._slot_rows, np.fromiter((rows.row_of[p] for p in added),
                                                                               np.int64, len(added))])
            return rows

    async def _encode(self, version, rows: ProductRows, pending: np.ndarray) -> None:
        """States for new or changed products, by the scorer version's own encoder."""
        try:
            encoder = self.repository.get(ENCODER, version.version_str)
        except (NotFound, Unavailable) as exc:
            log.warning("products left without encoder states", extra={"products": len(pending), "reason": str(exc)})
            return
        for first in range(0, len(pending), 4096):
            chunk = pending[first:first + 4096]
            rows.states[chunk] = (await encoder.infer({"product_ids": rows.ids[chunk]}))["states"]

    async def search(self, query: SearchQuery, deadline: float | None = None) -> SearchResult:
        if not self._ready:
            await self.start()
        # The awaits come first or last: between them nothing else runs, so the index, its
        # slots and the re-ranker's rows read here all belong to one moment of the catalog.
        user = await self._user(query.user_id)
        version, artifacts = self._model()
        rows = await self._sync(version, artifacts)
        corrected, weighted = understand(query.query, self.view.corrector, self._synonyms(artifacts))
        index = self.view.index
        # A merge during the model's await below replaces this list; it never edits it.
        product_ids = index.product_ids
        if query.candidates:
            slots, scores = index.rank_given(weighted, query.candidates)
        else:
            slots, scores = index.search(weighted, self.config.candidates)
        if version is None or rows is None or len(slots) == 0:
            hits = [SearchHit(product_ids[s], float(v), "bm25") for s, v in zip(slots[:query.k], scores[:query.k])]
            result = SearchResult(hits, corrected, "" if version is None else version.version_str)
        else:
            chosen = self._slot_rows[slots]
            feeds = {"query": query_ids(corrected)[None], "product_ids": rows.ids[chosen][None],
                     "states": rows.states[chosen][None], "product_features": rows.features[chosen][None],
                     "lexical": lexical_features(scores)[None], "user": user[None]}
            out = (await version.infer(feeds, deadline))["scores"][0]
            top = np.argsort(-out, kind="stable")[:query.k]
            if artifacts.reference is not None:
                self.drift.of(version.version_str, artifacts.reference).add_rows(
                    drift_rows(feeds["query"][0], len(slots), feeds["lexical"][0][top], rows.features[chosen[top]],
                               user), out[top])
            hits = [SearchHit(product_ids[slots[j]], float(out[j]), "reranker") for j in top]
            result = SearchResult(hits, corrected, version.version_str)
        if self.log is not None:
            served = self._event(query, result)
            self.log.record(served)
            if self.on_served is not None:
                self.on_served(served)
        return result

    def _synonyms(self, artifacts: SearchArtifacts | None) -> Synonyms:
        if artifacts is None:
            return self.configured_synonyms
        if self._synonyms_for is not artifacts:
            self._merged, self._synonyms_for = artifacts.synonyms.merge(self.configured_synonyms), artifacts
        return self._merged

    async def _user(self, user_id: str) -> np.ndarray:
        if not user_id:
            return user_features(None)
        block = await self.features.read("user", [user_id], [AFFINITY])
        if block.missing[0].all():
            return user_features(None)
        return user_features(block.values[0])

    def _event(self, query: SearchQuery, result: SearchResult) -> dict:
        now = self.log.now()
        request_id = query.request_id or self.log.auto_id(now)
        payload = {"query": query.query, "product_ids": [h.product_id for h in result.items], "request_id": request_id}
        if result.model_version:
            payload["model_version"] = f"{MODEL}:{result.model_version}"
        # a request id is the merchant's: two shops' "r1" are two events
        search_id = f"search-{query.merchant_id}/{request_id}" if query.merchant_id else f"search-{request_id}"
        return {"event_id": search_id, "event_type": "search", "timestamp": now,
                "user_id": query.user_id or None,
                "session_id": query.session_id or (f"user:{query.user_id}" if query.user_id
                                                   else f"anon:{query.merchant_id}/{request_id}" if query.merchant_id else f"anon:{request_id}"),
                "payload": payload, "context": {"merchant_id": query.merchant_id} if query.merchant_id else {}}

    async def close(self) -> None:
        if self.log is not None:
            await self.log.flush()
