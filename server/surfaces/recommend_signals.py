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

    def followers(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.next_pointers[item], self.next_pointers[item + 1]
        return self.next_items[start:end], self.next_counts[start:end]

    def neighbours(self, history: list[int], anchors: list[int]) -> np.ndarray:
        """The items co-visitation can score (for a candidate set)."""
        recent = (history + anchors)[-self.window:]
        found = self.knn_index[recent].ravel() if recent else np.zeros(0, np.int64)
        return found[found >= 0]

    def parts(self, item_embeddings: np.ndarray, user: np.ndarray, history: list[int], anchors: list[int],
              candidates: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every signal for `candidates` (default: all items). `history` oldest first."""
        n = item_embeddings.shape[0]
        rows = slice(None) if candidates is None else candidates
        repeat = np.log1p(np.bincount(history, minlength=n).astype(float))[rows] if history else \
            np.zeros(n)[rows]
        covisit = np.zeros(n)
        for item in (history + anchors)[-self.window:]:
            ok = self.knn_index[item] >= 0
            np.add.at(covisit, self.knn_index[item][ok], self.knn_weight[item][ok])
        if covisit.max() > 0:
            covisit /= covisit.max()
        transition = np.zeros(n)
        last = (history + anchors)[-1] if (history or anchors) else None
        if last is not None:
            items, counts = self.followers(last)
            if len(items):
                transition[items] = counts / counts.max()
        embeddings = item_embeddings if candidates is None else item_embeddings[candidates]
        return {"two_tower": embeddings @ user, "repeat": repeat, "co_visitation": covisit[rows],
                "transition": transition[rows], "popularity": self.popularity[rows]}
