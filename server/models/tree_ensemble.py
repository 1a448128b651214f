"""A gradient-boosted tree ensemble as flat arrays, served without the trainer's library: the
margin and exact TreeSHAP contributions by the Numba kernels in hanzo.kernels.treeshap (whose
docstring describes the array layout). Built by hanzo.training.xgb_export."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hanzo.kernels import treeshap

# Dtypes the kernels are compiled for (treeshap.prepare); coercing on construction keeps one
# specialisation per kernel instead of one per caller's dtype choice.
_DTYPES = {
    "feature": np.int32,
    "threshold": np.float32,
    "left": np.int32,
    "right": np.int32,
    "default_left": np.bool_,
    "value": np.float32,
    "cover": np.float64,
    "roots": np.int64,
}


# eq=False: field-wise == on numpy arrays is ambiguous; repr=False: thousands of nodes say little.
@dataclass(eq=False, repr=False)
class TreeEnsemble:
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    default_left: np.ndarray
    value: np.ndarray
    cover: np.ndarray
    roots: np.ndarray
    base_margin: float
    n_features: int
    expected_margin: float = field(init=False)
    max_depth: int = field(init=False)

    def __post_init__(self) -> None:
        for name, dtype in _DTYPES.items():
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=dtype))
        n_nodes = self.feature.shape[0]
        for name in _DTYPES:
            if name != "roots" and getattr(self, name).shape != (n_nodes,):
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected ({n_nodes},)")
        self.base_margin = float(self.base_margin)
        self.n_features = int(self.n_features)
        # The kernels do no bounds checks, so a bad index would read or write out of bounds
        # rather than raise: check once here.
        inner = self.feature >= 0
        if self.roots.size and (self.roots.min() < 0 or self.roots.max() >= n_nodes):
            raise ValueError("root index out of range")
        if np.any(self.feature >= self.n_features):
            raise ValueError("split feature index >= n_features")
        for child in (self.left[inner], self.right[inner]):
            if child.size and (child.min() < 0 or child.max() >= n_nodes):
                raise ValueError("child index out of range")
        if np.any(self.cover[inner] <= 0):
            raise ValueError("inner node with zero cover: TreeSHAP's fractions would be undefined")
        expected, depth = treeshap.tree_stats(self.feature, self.left, self.right, self.value, self.cover,
                                              self.roots)
        if depth < 0:
            raise ValueError("child links form a cycle")
        self.expected_margin = self.base_margin + float(expected)
        self.max_depth = int(depth)

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])

    def __repr__(self) -> str:
        return (f"TreeEnsemble(n_trees={self.n_trees}, n_nodes={self.feature.shape[0]}, n_features={self.n_features}, "
                f"max_depth={self.max_depth}, base_margin={self.base_margin:.6g}, "
                f"expected_margin={self.expected_margin:.6g})")

    def _rows(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected features of shape [n, {self.n_features}], got {list(X.shape)}")
        return X

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Raw score (log-odds for a logistic model) per row: float64 [n]. NaN is missing."""
        return treeshap.margin(self._rows(X), self.feature, self.threshold, self.left, self.right,
                               self.default_left, self.value, self.roots, self.base_margin)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP contributions in margin space: float64 [n, n_features + 1], the last
        column the bias (expected_margin); each row sums to margin(X)."""
        return treeshap.contributions(self._rows(X), self.feature, self.threshold, self.left, self.right,
                                      self.default_left, self.value, self.cover, self.roots,
                                      self.expected_margin, self.max_depth)

    def save(self, path: str | Path) -> None:
        """One .npz, arrays only, so load() needs no pickle."""
        arrays = {name: getattr(self, name) for name in _DTYPES}
        # Through a file object: np.savez given a name appends ".npz" when it lacks one, and the
        # file would then not be where load(path) looks.
        with open(path, "wb") as f:
            np.savez(f, **arrays, base_margin=np.float64(self.base_margin), n_features=np.int64(self.n_features))

    @classmethod
    def load(cls, path: str | Path) -> TreeEnsemble:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in _DTYPES}
            return cls(**arrays, base_margin=float(data["base_margin"]), n_features=int(data["n_features"]))
