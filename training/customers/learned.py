"""Fit the learned customer model (hanzo.server.customers.model) on one history.

The history up to `as_of` is cut in two by time: the customers as they stood at the cut are the
inputs, what they bought after it the labels. The gap after the cut is the asked horizon or half
the history, whichever is shorter, so that a nightly job on a young shop still has customers to
learn from; the model's starting points carry the asked horizon (see the model's docstring).
Served with BG/NBD and Gamma-Gamma refitted on the whole history.

The trees' settings were chosen on CDNOW at an earlier origin than the one the evaluation reports
(training/customers/evaluate.py --tune); they are fixed here, not searched per run, so a nightly
job cannot fit itself to the weeks it is judged on."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from hanzo.server.customers.bgnbd import fit_bgnbd
from hanzo.server.customers.gamma_gamma import fit_gamma_gamma
from hanzo.server.customers.lifetime import lifetime_features
from hanzo.server.customers.model import CustomerModel
from hanzo.server.customers.rfm import summarize

from .outcomes import outcomes


@dataclass(frozen=True)
class TreeSettings:
    rounds: int = 100
    max_depth: int = 2
    eta: float = 0.05
    min_child_weight: float = 20.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    seed: int = 7


def training_horizon(history_days: int, horizon_days: int) -> int:
    return int(max(1, min(horizon_days, history_days // 2)))


def _boost(X: np.ndarray, label: np.ndarray, start: np.ndarray, objective: str, settings: TreeSettings):
    import xgboost

    params = {"objective": objective, "eta": settings.eta, "max_depth": settings.max_depth,
              "min_child_weight": settings.min_child_weight, "subsample": settings.subsample,
              "colsample_bytree": settings.colsample_bytree, "seed": settings.seed, "nthread": 2}
    data = xgboost.DMatrix(X, label=label, base_margin=start)
    return xgboost.train(params, data, settings.rounds)


def _trees(booster):
    """The booster as served: with a base margin per row, xgboost adds no base_score of its own."""
    from hanzo.server.models.tree_ensemble import TreeEnsemble
    from hanzo.training.xgb_export import tree_ensemble

    trees = tree_ensemble(booster)
    return TreeEnsemble(trees.feature, trees.threshold, trees.left, trees.right, trees.default_left, trees.value,
                        trees.cover, trees.roots, 0.0, trees.n_features)


def negative_binomial_shape(expected: np.ndarray, bought: np.ndarray) -> float:
    """The shape k that makes 1 - (1 + m/k)^-k the likeliest chance of buying at all."""
    def loss(log_k: float) -> float:
        k = np.exp(log_k)
        p = np.clip(1.0 - (1.0 + expected / k) ** -k, 1e-9, 1 - 1e-9)
        return -float(np.mean(bought * np.log(p) + (1 - bought) * np.log1p(-p)))

    return float(np.exp(minimize_scalar(loss, bounds=(-6.0, 6.0), method="bounded").x))


def fit_customer_model(users: np.ndarray, days: np.ndarray, spend: np.ndarray, as_of: int, horizon_days: int,
                       settings: TreeSettings = TreeSettings()) -> CustomerModel:
    known = days <= as_of
    if not known.any():
        raise ValueError("no purchase on or before as_of")
    gap = training_horizon(int(as_of - days[known].min()), horizon_days)
    cut = as_of - gap
    summary, lifetime = summarize(users, days, spend, cut), lifetime_features(users, days, spend, cut)
    if len(summary) < 10:
        raise ValueError(f"{len(summary)} customers had bought by the training cut; too few to learn from")
    bought, spent = outcomes(users, days, spend, summary, cut, as_of)
    at_cut = CustomerModel(fit_bgnbd(summary), fit_gamma_gamma(summary), None, None, 1.0, "", gap)
    X = at_cut.inputs(lifetime)
    start_days, start_money = at_cut.starting_points(lifetime, gap)
    purchases = _boost(X, bought, start_days, "count:poisson", settings)
    money = _boost(X, spent, start_money, "reg:tweedie", settings)
    at_cut.purchases, at_cut.spend = _trees(purchases), _trees(money)
    shape = negative_binomial_shape(np.exp(start_days + at_cut.purchases.margin(X)), bought > 0)
    whole = summarize(users, days, spend, as_of)
    return CustomerModel(fit_bgnbd(whole), fit_gamma_gamma(whole), at_cut.purchases, at_cut.spend, shape,
                         str(np.datetime64(int(as_of), "D")), gap)
