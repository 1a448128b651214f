"""How fraud decisions are judged: at a review rate (the share of orders sent to VERIFY or
above), the fraud amount caught, the fraud loss left (amount not caught), the false-positive
rate among good orders; and the precision-recall area with a bootstrap interval."""
from __future__ import annotations

import numpy as np

from hanzo.training.metrics import bootstrap_statistic


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve as the mean precision at each fraud's rank (ties
    broken against the model: a fraud tied with good orders ranks after them)."""
    y = np.asarray(y, bool)
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    order = np.lexsort((y, -np.asarray(score, np.float64)))
    hits = y[order]
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, positives + 1) / ranks))


def average_precision_ci(y: np.ndarray, score: np.ndarray, seed: int = 0, resamples: int = 1000,
                         level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the area, resampling orders with replacement (NaN where no
    resample holds a fraud)."""
    y, score = np.asarray(y, bool), np.asarray(score)
    return bootstrap_statistic(lambda pick: average_precision(y[pick], score[pick]), len(y), seed, resamples, level)


def flag_top(score: np.ndarray, rate: float) -> np.ndarray:
    """The highest-scored `rate` share of orders (ties by order index, so the count is exact)."""
    count = int(round(rate * len(score)))
    flagged = np.zeros(len(score), bool)
    flagged[np.lexsort((np.arange(len(score)), -np.asarray(score, np.float64)))[:count]] = True
    return flagged


def at_review(y: np.ndarray, amount: np.ndarray, flagged: np.ndarray) -> dict:
    """What sending the `flagged` orders to review catches and costs."""
    y = np.asarray(y, bool)
    fraud_amount = float(amount[y].sum())
    caught = float(amount[y & flagged].sum())
    good = int((~y).sum())
    false_positives = int((flagged & ~y).sum())
    return {"review_rate": float(flagged.mean()) if len(flagged) else 0.0,
            "frauds": int(y.sum()), "frauds_flagged": int((y & flagged).sum()),
            "fraud_amount": fraud_amount, "fraud_amount_caught": caught, "fraud_loss": fraud_amount - caught,
            "caught_share": caught / fraud_amount if fraud_amount else float("nan"),
            "false_positives": false_positives, "false_positive_rate": false_positives / good if good else 0.0}


def flag_to_catch(y: np.ndarray, amount: np.ndarray, score: np.ndarray, caught: float) -> np.ndarray:
    """The fewest highest-scored orders whose fraud amount reaches `caught`: what a model must
    review to catch as much as another system did."""
    order = np.lexsort((np.arange(len(score)), -np.asarray(score, np.float64)))
    running = np.cumsum(np.where(np.asarray(y, bool)[order], amount[order], 0.0))
    count = int(np.searchsorted(running, caught - 1e-9) + 1) if caught > 0 else 0
    flagged = np.zeros(len(score), bool)
    flagged[order[:min(count, len(score))]] = True
    return flagged
