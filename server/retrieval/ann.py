"""Approximate nearest items by inner product (hnswlib), with the items a request may not get
(out of stock, excluded, already shown) removed by a mask in the native extension: the index
is over-fetched and filtered without calling back into Python per candidate, fetching more
only when too few survive. New products join the index without a retrain."""
from __future__ import annotations

import math
from pathlib import Path

import hnswlib
import numpy as np

from hanzo import _native


class ItemIndex:
    def __init__(self, dim: int, capacity: int, ef_construction: int = 200, m: int = 16, seed: int = 0) -> None:
        self.dim = dim
        self.index = hnswlib.Index(space="ip", dim=dim)
        self.index.init_index(max_elements=max(capacity, 1), ef_construction=ef_construction, M=m, random_seed=seed)
        self.ef = 200

    @classmethod
    def build(cls, embeddings: np.ndarray, ef_construction: int = 200, m: int = 16, seed: int = 0,
              threads: int = 1) -> "ItemIndex":
        """An index whose labels are the rows of `embeddings` (float32, unit norm)."""
        index = cls(embeddings.shape[1], len(embeddings), ef_construction, m, seed)
        index.index.add_items(np.ascontiguousarray(embeddings, dtype=np.float32), np.arange(len(embeddings)),
                              num_threads=threads)
        return index

    @classmethod
    def load(cls, path: Path, dim: int, capacity: int) -> "ItemIndex":
        index = cls.__new__(cls)
        index.dim = dim
        index.index = hnswlib.Index(space="ip", dim=dim)
        index.index.load_index(str(path), max_elements=capacity)
        index.ef = 200
        return index

    def save(self, path: Path) -> None:
        self.index.save_index(str(path))

    def __len__(self) -> int:
        return self.index.get_current_count()

    def set_ef(self, ef: int) -> None:
        self.ef = ef
        self.index.set_ef(ef)

    def add(self, labels: np.ndarray, embeddings: np.ndarray) -> None:
        """New items (labels past the current ones), growing the index when it is full."""
        needed = len(self) + len(labels)
        if needed > self.index.get_max_elements():
            self.index.resize_index(max(needed, 2 * self.index.get_max_elements()))
        self.index.add_items(np.ascontiguousarray(embeddings, dtype=np.float32), labels, num_threads=1)

    def search(self, queries: np.ndarray, k: int, blocked: np.ndarray | None = None,
               blocked_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 [rows, k], inner products float32 [rows, k]), best first; -1 where
        fewer than k unblocked items exist. `blocked` is a uint8 mask over labels, and
        `blocked_count` its number of ones where the caller knows it (saves a pass over it)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        count = len(self)
        k = min(k, count)
        if blocked_count is None and blocked is not None:
            blocked_count = int(np.count_nonzero(blocked))
        if not blocked_count:
            self.index.set_ef(max(self.ef, k))
            labels, distances = self.index.knn_query(queries, k=k, num_threads=1)
            return labels.astype(np.int64), (1.0 - distances).astype(np.float32)
        # Enough for the blocked share of the catalogue to fall among the results, plus the
        # excluded items a query tends to sit next to (its anchors, the cart); more is fetched
        # in the rare case too few survive.
        share = min(blocked_count / count, 0.95)
        fetch = min(count, math.ceil(1.1 * k / (1.0 - share)) + min(blocked_count, k))
        while True:
            self.index.set_ef(max(self.ef, fetch))
            labels, distances = self.index.knn_query(queries, k=fetch, num_threads=1)
            kept, scores, fewest = _native.first_unblocked(labels.astype(np.int64), (1.0 - distances), blocked, k)
            if fewest >= k or fetch >= count:
                return kept, scores
            fetch = min(count, fetch * 2)
