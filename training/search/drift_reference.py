"""The search re-ranker's drift reference: the candidates it ranks into the top `k` of held-out
lists, each described as the server describes what it shows (server/search/rerank_inputs.
drift_rows), with the scores it gave them."""
from __future__ import annotations

import numpy as np
import torch

from hanzo.server.experiments.drift import Reference
from hanzo.server.search.rerank_inputs import DRIFT_INPUTS, drift_rows, lexical_features, query_ids

from .rerank_data import ProductTable, TrainingList, candidates_for, no_user


@torch.no_grad()
def search_reference(model, table: ProductTable, states: np.ndarray, lists: list[TrainingList],
                     k: int = 10) -> Reference | None:
    """None without a list to describe."""
    model.eval()
    rows, scores = [], []
    for item in lists:
        if len(item.slots) == 0:
            continue
        out = model.scorer(*[torch.from_numpy(np.ascontiguousarray(x)[None]) for x in (
            item.query, table.ids[item.slots], states[item.slots], table.features[item.slots], item.lexical,
            item.user)])[0].numpy()
        top = np.argsort(-out, kind="stable")[:k]
        rows.append(drift_rows(item.query, len(item.slots), item.lexical[top], table.features[item.slots[top]],
                               item.user))
        scores.append(out[top])
    if not rows:
        return None
    return Reference.from_rows(list(DRIFT_INPUTS), np.concatenate(rows), np.concatenate(scores))


def query_lists(index, queries, weighted_terms, corrected, depth: int) -> list[TrainingList]:
    """Each query's BM25 candidates at the serving depth, as the server builds them (no user:
    judgments carry none)."""
    out = []
    for q in queries:
        slots, scores = candidates_for(index, weighted_terms(q.query), None, depth)
        out.append(TrainingList(query_ids(corrected(q.query)), slots, lexical_features(scores),
                                np.zeros(len(slots), np.float32), no_user()))
    return out
