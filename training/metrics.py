"""The measures every evaluation here shares: NDCG, in its two meanings (a set of wanted items,
or graded judgments), and the seeded bootstrap interval over cases."""
from __future__ import annotations

from typing import Callable

import numpy as np


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def binary_ndcg_at(ranked: list, wanted: list, k: int) -> float:
    """NDCG@k where each wanted item gains 1 and every other 0 (the next basket, the next click)."""
    wanted = set(wanted)
    discounts = _discounts(k)
    dcg = sum(discounts[i] for i, item in enumerate(ranked[:k]) if item in wanted)
    ideal = discounts[:min(len(wanted), k)].sum()
    return float(dcg / ideal) if ideal else 0.0


def graded_ndcg_at(ranked: list[str], judged: dict[str, float], gain: Callable[[float], float], k: int = 10) -> float:
    """NDCG@k against graded judgments, each turned into a gain by `gain`; unjudged items gain 0.
    A case whose judged items all gain 0 scores 0 (it is kept, so every system is judged on the
    same cases)."""
    discounts = _discounts(k)
    dcg = sum(gain(judged[p]) * discounts[i] for i, p in enumerate(ranked[:k]) if p in judged)
    ideal = sorted((gain(r) for r in judged.values()), reverse=True)[:k]
    idcg = float(np.dot(ideal, discounts[:len(ideal)]))
    return float(dcg / idcg) if idcg > 0 else 0.0


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    return float(np.quantile(samples, tail)), float(np.quantile(samples, 1 - tail))


def bootstrap(values: np.ndarray, seed: int = 0, resamples: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean, resampling cases with replacement."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    return _percentiles(means, level)


def bootstrap_statistic(statistic: Callable[[np.ndarray], float], cases: int, seed: int = 0, resamples: int = 1000,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of any statistic of the cases: `statistic(indices)` on each resample
    of `cases` indices; resamples where it is undefined (NaN) are left out, and (NaN, NaN)
    comes back when all are."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, cases, cases)) for _ in range(resamples)], dtype=float)
    values = values[np.isfinite(values)]
    return _percentiles(values, level) if len(values) else (float("nan"), float("nan"))
