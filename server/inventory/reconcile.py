"""Forecasts at several levels (products, categories, locations, the total) made to add up.
Each level's series is forecast on its own (base forecasts); reconciliation maps them onto
forecasts where every aggregate equals the sum of its parts:

    reconciled = S (S' W^-1 S)^-1 S' W^-1 base

with S the summing matrix (every series as a sum of the bottom series) and W the base errors'
covariance, taken diagonal from each series' in-sample error variance (the "WLS" / MinT
diagonal estimator: a noisy series moves more than a steady one). `bottom_up` (W ignored,
aggregates summed) is the simple case, kept for comparison."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Hierarchy:
    """Series names, top-down or in any order, and the summing matrix S [series, bottom]:
    S[i, j] = 1 when bottom series j is part of series i."""
    names: list[str]
    summing: np.ndarray
    bottom: list[str]

    @classmethod
    def from_parents(cls, parents: dict[str, str | None]) -> "Hierarchy":
        """{series: its parent series (None at the top)}; the bottom series have no children."""
        children: dict[str, list[str]] = {name: [] for name in parents}
        for name, parent in parents.items():
            if parent is not None:
                if parent not in parents:
                    raise ValueError(f"{name}'s parent {parent!r} is not a series")
                children[parent].append(name)
        bottom = sorted(name for name, kids in children.items() if not kids)
        column = {name: j for j, name in enumerate(bottom)}
        names = sorted(parents)

        def leaves(name: str) -> list[str]:
            kids = children[name]
            return [name] if not kids else [leaf for kid in kids for leaf in leaves(kid)]
        summing = np.zeros((len(names), len(bottom)))
        for i, name in enumerate(names):
            for leaf in leaves(name):
                summing[i, column[leaf]] = 1.0
        return cls(names, summing, bottom)


def reconcile(hierarchy: Hierarchy, base: np.ndarray, error_variance: np.ndarray | None = None) -> np.ndarray:
    """base [series, horizon] in hierarchy.names order -> coherent forecasts, same shape.
    `error_variance` [series]: each base forecast's in-sample error variance (None: OLS)."""
    s = hierarchy.summing
    weights = np.ones(len(s)) if error_variance is None else 1.0 / np.maximum(error_variance, 1e-12)
    sw = s.T * weights  # S' W^-1
    bottom = np.linalg.solve(sw @ s, sw @ base)
    return s @ bottom


def bottom_up(hierarchy: Hierarchy, base: np.ndarray) -> np.ndarray:
    rows = [hierarchy.names.index(name) for name in hierarchy.bottom]
    return hierarchy.summing @ base[rows]
