"""The re-ranker's inputs, built one way for training and serving: the catalogue's product word
ids and features (index time), each query's BM25 candidates with their lexical features
(query time), and training lists of candidates with graded gains."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hanzo.server.search.lexical import LexicalIndex

from hanzo.server.search.rerank_inputs import (PRODUCT_FEATURES, PRODUCT_LEN, lexical_features,
                                               product_features_row, product_ids_row, query_ids, user_features)


@dataclass
class ProductTable:
    """Per index slot: word ids [n, PRODUCT_LEN] and features [n, PRODUCT_FEATURES]."""
    ids: np.ndarray
    features: np.ndarray

    @classmethod
    def build(cls, index: LexicalIndex, products: dict[str, dict], category_slot=lambda p: None) -> "ProductTable":
        n = len(index.product_ids)
        ids = np.zeros((n, PRODUCT_LEN), np.int64)
        features = np.zeros((n, PRODUCT_FEATURES), np.float32)
        for slot, product_id in enumerate(index.product_ids):
            product = products.get(product_id) or {"product_id": product_id}
            ids[slot] = product_ids_row(product)
            features[slot] = product_features_row(product, category_slot(product_id))
        return cls(ids, features)


def no_user() -> np.ndarray:
    return user_features(None)


@dataclass
class TrainingList:
    query: np.ndarray  # word ids
    slots: np.ndarray  # candidate slots, BM25 order
    lexical: np.ndarray  # [n, 3]
    gains: np.ndarray  # [n], 0 for unjudged
    user: np.ndarray


def candidates_for(index: LexicalIndex, query_terms, judged: dict[str, float] | None, depth: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(slots, BM25 scores) best first: the BM25 top `depth` over the catalogue, or, for the
    re-ranking task, the query's judged products (what a caller passes as candidates)."""
    if judged is None:
        return index.search(query_terms, depth)
    return index.rank_given(query_terms, judged)


def training_lists(index: LexicalIndex, queries, gain, depth: int, weighted_terms,
                   judged_only: bool = False, corrected=lambda query: query) -> list[TrainingList]:
    """Per judged query: its candidates as served (the BM25 top `depth`, the serving depth, so
    the lexical features mean the same; or its judged products), each with its gain; judged
    products BM25 misses are left out, since the ranker never sees them in service."""
    out = []
    for q in queries:
        slots, scores = candidates_for(index, weighted_terms(q.query), q.judgments if judged_only else None, depth)
        gains = np.asarray([gain(q.judgments[index.product_ids[s]]) if index.product_ids[s] in q.judgments else 0.0
                            for s in slots], np.float32)
        if gains.max(initial=0.0) <= 0:
            continue  # nothing to learn from
        # The words the ranker sees are the corrected query's, as in service.
        out.append(TrainingList(query_ids(corrected(q.query)), slots, lexical_features(scores), gains, no_user()))
    return out
