"""The linear baseline: a logistic regression over the same inputs, prepared as the MLP prepares
them (signed log, standardised on the training rows, unknown values as zero plus a flag)."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression


class LogisticBaseline:
    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int = 0, c: float = 1.0) -> None:
        logged = np.sign(x) * np.log1p(np.abs(x))
        with warnings.catch_warnings():  # a column no row knows (no accounts in a processor's data)
            warnings.simplefilter("ignore", RuntimeWarning)
            self.center = np.nan_to_num(np.nanmean(logged, axis=0)) if len(x) else np.zeros(x.shape[1])
            scale = np.nan_to_num(np.nanstd(logged, axis=0), nan=1.0) if len(x) else np.ones(x.shape[1])
        self.scale = np.where(scale > 1e-6, scale, 1.0)
        self.model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(self._prepare(x), y)

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        unknown = np.isnan(x)
        z = (np.sign(x) * np.log1p(np.abs(np.nan_to_num(x))) - self.center) / self.scale
        return np.concatenate([np.where(unknown, 0.0, z), unknown.astype(np.float64)], axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(self._prepare(x))[:, 1]


def fit_logistic(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int = 0,
                 log=print) -> LogisticBaseline:
    """The regularisation strength with the best validation precision-recall area."""
    from .metrics import average_precision

    best, chosen = -1.0, None
    for c in (0.01, 0.1, 1.0, 10.0):
        model = LogisticBaseline(x, y, seed, c)
        score = average_precision(y_val, model.predict(x_val))
        if score > best:
            best, chosen = score, model
    log(f"logistic regression: validation PR-AUC {best:.4f}")
    return chosen
