"""Ranking metrics per case, and a seeded bootstrap interval over cases."""
from __future__ import annotations

import numpy as np


def recall_at(ranked: list[int], target: list[int], k: int) -> float:
    wanted = set(target)
    return len(wanted.intersection(ranked[:k])) / len(wanted) if wanted else 0.0


def ndcg_at(ranked: list[int], target: list[int], k: int) -> float:
    wanted = set(target)
    dcg = sum(1.0 / np.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in wanted)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(wanted), k)))
    return dcg / ideal if ideal else 0.0


def mrr_at(ranked: list[int], target: list[int], k: int) -> float:
    wanted = set(target)
    for i, item in enumerate(ranked[:k]):
        if item in wanted:
            return 1.0 / (i + 1)
    return 0.0


METRICS = {"recall": recall_at, "ndcg": ndcg_at, "mrr": mrr_at}


def bootstrap(values: np.ndarray, seed: int = 0, resamples: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean, resampling cases with replacement."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
