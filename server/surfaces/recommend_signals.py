"""The signals the recommender blends with the two-tower score, computed one way for training
(over every item) and serving (over the candidates): the owner's repeats, co-visitation with
their last `window` items and the anchors, what usually comes next after the last item, and
popularity. Each is scaled to [0, 1]-ish so the learned weights compare."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIGNALS = ("two_tower", "repeat", "co_visitation", "transition", "popularity")


@dataclass
class Signals:
    knn_index: np.ndarray  # int64 [items, neighbours], -1 pads: most co-visited items
    knn_weight: np.ndarray  # float [items, neighbours]: their cosine similarity
    popularity: np.ndarray  # float [items], log-share scaled to [0, 1]
    next_pointers: np.ndarray  # int64 [items + 1]: CSR of what followed each item
    next_items: np.ndarray
    next_counts: np.ndarray
    window: int  # how many recent items co-visitation looks at

    @classmethod
    def from_sequences(cls, sequences: list[list[int]], n_items: int, knn_index: np.ndarray, knn_weight: np.ndarray,
                       window: int) -> "Signals":
        share = np.bincount(np.concatenate([np.asarray(s, np.int64) for s in sequences]) if sequences else
                            np.zeros(0, np.int64), minlength=n_items) + 1.0
        popularity = np.log(share / share.max())
        popularity = (popularity - popularity.min()) / max(np.ptp(popularity), 1e-9)
        followers: dict[int, dict[int, int]] = {}
        for sequence in sequences:
            for a, b in zip(sequence, sequence[1:]):
                row = followers.setdefault(a, {})
                row[b] = row.get(b, 0) + 1
        pointers, items, counts = [0], [], []
        for a in range(n_items):
            row = followers.get(a, {})
            items.extend(row.keys())
            counts.extend(row.values())
            pointers.append(len(items))
        return cls(knn_index, knn_weight, popularity, np.asarray(pointers, np.int64), np.asarray(items, np.int64),
                   np.asarray(counts, float), window)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"knn_index": self.knn_index, "knn_weight": self.knn_weight, "popularity": self.popularity,
                "next_pointers": self.next_pointers, "next_items": self.next_items, "next_counts": self.next_counts,
                "window": np.asarray(self.window)}

    @classmethod
    def from_arrays(cls, arrays) -> "Signals":
        return cls(arrays["knn_index"], arrays["knn_weight"], arrays["popularity"], arrays["next_pointers"],
                   arrays["next_items"], arrays["next_counts"], int(arrays["window"]))

    def _recent(self, history: list[int], anchors: list[int]) -> list[int]:
        """The last `window` items co-visitation looks at (none for a window of 0)."""
        return (history + anchors)[-self.window:] if self.window > 0 else []

    def followers(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.next_pointers[item], self.next_pointers[item + 1]
        return self.next_items[start:end], self.next_counts[start:end]

    def neighbours(self, history: list[int], anchors: list[int]) -> np.ndarray:
        """The items co-visitation can score (for a candidate set)."""
        recent = self._recent(history, anchors)
        found = self.knn_index[recent].ravel() if recent else np.zeros(0, np.int64)
        return found[found >= 0]

    def parts(self, item_embeddings: np.ndarray, user: np.ndarray, history: list[int], anchors: list[int],
              candidates: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every signal for `candidates` (default: all items). `history` oldest first. With
        candidates, nothing of the catalog's size is allocated: the work follows the history."""
        n = item_embeddings.shape[0]
        keys = np.arange(n) if candidates is None else candidates
        repeat = np.zeros(len(keys))
        if history:
            items, counts = np.unique(np.asarray(history, np.int64), return_counts=True)
            repeat = np.log1p(_lookup(items, counts.astype(float), keys))
        recent = self._recent(history, anchors)
        covisit = np.zeros(len(keys))
        if recent:
            found = self.knn_index[recent].ravel()
            weight = self.knn_weight[recent].ravel()
            ok = found >= 0
            items, inverse = np.unique(found[ok], return_inverse=True)
            sums = np.bincount(inverse, weights=weight[ok], minlength=len(items))
            if len(sums) and sums.max() > 0:
                covisit = _lookup(items, sums / sums.max(), keys)
        transition = np.zeros(len(keys))
        last = (history + anchors)[-1] if (history or anchors) else None
        if last is not None:
            items, counts = self.followers(last)
            if len(items):
                order = np.argsort(items, kind="stable")
                transition = _lookup(items[order], counts[order] / counts.max(), keys)
        embeddings = item_embeddings if candidates is None else item_embeddings[candidates]
        return {"two_tower": embeddings @ user, "repeat": repeat, "co_visitation": covisit, "transition": transition,
                "popularity": self.popularity[keys]}


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """values[i] where sorted_keys[i] == wanted[j], else 0, for each j."""
    if len(sorted_keys) == 0:
        return np.zeros(len(wanted))
    position = np.minimum(np.searchsorted(sorted_keys, wanted), len(sorted_keys) - 1)
    return np.where(sorted_keys[position] == wanted, values[position], 0.0)
