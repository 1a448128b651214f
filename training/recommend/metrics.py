"""Ranking metrics per case for next-basket and next-click tasks (NDCG and the bootstrap come
from training.metrics)."""
from __future__ import annotations

from hanzo.training.metrics import binary_ndcg_at


def recall_at(ranked: list[int], target: list[int], k: int) -> float:
    wanted = set(target)
    return len(wanted.intersection(ranked[:k])) / len(wanted) if wanted else 0.0


def mrr_at(ranked: list[int], target: list[int], k: int) -> float:
    wanted = set(target)
    for i, item in enumerate(ranked[:k]):
        if item in wanted:
            return 1.0 / (i + 1)
    return 0.0


METRICS = {"recall": recall_at, "ndcg": binary_ndcg_at, "mrr": mrr_at}

