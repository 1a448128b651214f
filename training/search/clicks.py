"""Training lists from search logs: each logged search's shown products, scored by what the
shopper did (a click weighted by the inverse of its rank's examination chance, estimated from
the same logs; a purchase in the same session later counts more), with the user's features as
they were at the moment of the search (read through get_historical_features, so nothing from
after it leaks in). Validation and test are later searches than training: split by time."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from hanzo.server.features.offline import get_historical_features
from hanzo.server.search.lexical import LexicalIndex
from hanzo.server.search.rerank_inputs import lexical_features, query_ids, user_features

from hanzo.training.metrics import bootstrap, graded_ndcg_at

from .position_bias import estimate_position_bias, ips_weights, search_impressions

from .rerank_data import ProductTable, TrainingList

AFFINITY = "user_category_affinity_30d"
PURCHASE_GAIN = 2.0  # a purchase after the search says more than a click


@dataclass
class LoggedSearch:
    event_id: str
    query: str
    shown: list[str]
    user_id: str | None
    session_id: str
    timestamp: int


def read_searches(events: list[dict]) -> tuple[list[LoggedSearch], dict[str, dict[str, float]]]:
    """The searches in time order, and per search its outcome per product: clicks (IPS
    weighted) and purchases in the session after it."""
    impressions = search_impressions(events)
    propensity = estimate_position_bias(impressions)
    searches, clicks, bought = [], defaultdict(dict), defaultdict(list)
    for event in events:
        kind, payload, context = event["event_type"], event.get("payload") or {}, event.get("context") or {}
        if kind == "search":
            searches.append(LoggedSearch(event["event_id"], str(payload.get("query", "")),
                                         list(payload.get("product_ids") or []), event.get("user_id"),
                                         event.get("session_id") or "", int(event["timestamp"])))
        elif kind == "product_view" and context.get("source") == "search" and context.get("search_event_id"):
            rank = int(context.get("position") or 0)
            # Ranks past those the bias was estimated for (a long result page) teach nothing
            # a weight can be trusted for.
            if 1 <= rank <= len(propensity):
                weight = float(ips_weights(np.asarray([rank]), propensity)[0])
                clicks[context["search_event_id"]][payload.get("product_id")] = weight
        elif kind == "purchase" and payload.get("product_id"):
            bought[event.get("session_id") or ""].append((int(event["timestamp"]), payload["product_id"]))
    searches.sort(key=lambda s: s.timestamp)
    outcomes: dict[str, dict[str, float]] = {}
    for search in searches:
        gains = dict(clicks.get(search.event_id, {}))
        shown = set(search.shown)
        for moment, product in bought.get(search.session_id, ()):
            if moment >= search.timestamp and product in shown:
                gains[product] = gains.get(product, 0.0) + PURCHASE_GAIN
        if gains:
            outcomes[search.event_id] = gains
    return searches, outcomes


def user_vectors(events: list[dict], searches: list[LoggedSearch]) -> dict[str, np.ndarray]:
    """Each search's user features as of the search (anonymous searches get none)."""
    known = [s for s in searches if s.user_id]
    if not known:
        return {}
    ordered = sorted(events, key=lambda e: e["timestamp"])
    block = get_historical_features(ordered, "user", [(s.user_id, s.timestamp) for s in known], [AFFINITY])
    return {s.event_id: user_features(None if block.missing[i].all() else block.values[i])
            for i, s in enumerate(known)}


def click_lists(index: LexicalIndex, searches: list[LoggedSearch], outcomes: dict[str, dict[str, float]],
                users: dict[str, np.ndarray], weighted_terms, corrected=lambda query: query) -> list[TrainingList]:
    """One list per search with an outcome: its shown products in BM25 order (as the server
    would hand them to the ranker), each with its gain."""
    out = []
    for search in searches:
        gains_of = outcomes.get(search.event_id)
        if not gains_of:
            continue
        slots, scores = index.rank_given(weighted_terms(search.query), search.shown)
        if len(slots) < 2:
            continue
        gains = np.asarray([gains_of.get(index.product_ids[s], 0.0) for s in slots], np.float32)
        if gains.max() <= 0:
            continue
        out.append(TrainingList(query_ids(corrected(search.query)), slots, lexical_features(scores), gains,
                                users.get(search.event_id, user_features(None))))
    return out


def list_ndcg(order: np.ndarray, gains: np.ndarray, k: int = 10) -> float:
    ranked = [str(j) for j in order]
    return graded_ndcg_at(ranked, {str(j): float(g) for j, g in enumerate(gains)}, lambda g: g, k)


def split_by_time(lists: list[TrainingList], shares: tuple[float, float] = (0.7, 0.1)):
    """(train, validation, test): `lists` come in the searches' time order."""
    n = len(lists)
    a, b = int(n * shares[0]), int(n * (shares[0] + shares[1]))
    return lists[:a], lists[a:b], lists[b:]


@torch.no_grad()
def evaluate_lists(model, table: ProductTable, lists: list[TrainingList], states: np.ndarray,
                   seed: int = 0) -> dict:
    """NDCG@10 of the outcome-weighted gains: the model's order against BM25's (the lists'
    own order), with bootstrap intervals."""
    model.eval()
    served, bm25 = [], []
    for item in lists:
        out = model.scorer(*[torch.from_numpy(x[None]) for x in (
            item.query, table.ids[item.slots], states[item.slots], table.features[item.slots], item.lexical,
            item.user)])[0].numpy()
        served.append(list_ndcg(np.lexsort((np.arange(len(out)), -out)), item.gains))
        bm25.append(list_ndcg(np.arange(len(item.gains)), item.gains))
    served, bm25 = np.asarray(served), np.asarray(bm25)
    return {"lists": len(served), "ndcg": float(served.mean()), "ndcg_ci": bootstrap(served, seed),
            "bm25": float(bm25.mean()), "bm25_ci": bootstrap(bm25, seed), "gain_ci": bootstrap(served - bm25, seed)}
