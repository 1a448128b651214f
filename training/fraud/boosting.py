"""The tree half of the fraud ensemble: gradient-boosted trees (xgboost), early-stopped on the
validation rows' precision-recall area. Unweighted, so its output stays a probability the
decision thresholds (0.3, 0.7) can be read against."""
from __future__ import annotations

import numpy as np
import xgboost


def fit_xgb(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int = 0,
            rounds: int = 600, log=print) -> tuple[xgboost.Booster, dict]:
    params = {"objective": "binary:logistic", "eval_metric": "aucpr", "eta": 0.05, "max_depth": 5,
              "min_child_weight": 1.0, "subsample": 0.8, "colsample_bytree": 0.8, "lambda": 1.0,
              "tree_method": "hist", "seed": seed, "nthread": 2}
    train = xgboost.DMatrix(x, label=y, missing=np.nan)
    validation = xgboost.DMatrix(x_val, label=y_val, missing=np.nan)
    booster = xgboost.train(params, train, num_boost_round=rounds, evals=[(validation, "validation")],
                            early_stopping_rounds=60, verbose_eval=False)
    best, score = booster.best_iteration, float(booster.best_score)
    booster = booster[: best + 1]  # what serving exports: the trees up to the best round
    log(f"xgboost: {best + 1} trees, validation PR-AUC {score:.4f}")
    return booster, {"trees": best + 1, "validation_aucpr": score}


def predict_xgb(booster: xgboost.Booster, x: np.ndarray) -> np.ndarray:
    return booster.predict(xgboost.DMatrix(x, missing=np.nan)).astype(np.float64)
