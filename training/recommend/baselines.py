"""The baselines a recommender must beat, each tuned on the validation task: popularity,
item-to-item CF (cosine over co-occurrence, tuned neighbourhood), the customer's own most
bought products, and last-item transitions."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .data import Case, Task, counts, flat
from .metrics import METRICS


class Recommender(Protocol):
    name: str

    def fit(self, task: Task) -> "Recommender": ...

    def recommend(self, case: Case, k: int) -> list[int]: ...


def _top(scores: np.ndarray, k: int) -> list[int]:
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.lexsort((part, -scores[part]))].tolist()


def _fill(ranked: list[int], popular: list[int], k: int) -> list[int]:
    seen = set(ranked)
    out = list(ranked)
    for item in popular:
        if len(out) >= k:
            break
        if item not in seen:
            out.append(item)
            seen.add(item)
    return out[:k]


@dataclass
class Popularity:
    name: str = "popularity"
    order: list[int] = field(default_factory=list)

    def fit(self, task: Task) -> "Popularity":
        self.order = _top(counts(task.train, len(task.vocabulary)), len(task.vocabulary))
        return self

    def recommend(self, case: Case, k: int) -> list[int]:
        return self.order[:k]


@dataclass
class OwnMostBought:
    """The customer's own products, most often bought first (the latest basket breaks ties),
    then the most popular."""
    name: str = "own_most_bought"
    popular: Popularity = field(default_factory=Popularity)

    def fit(self, task: Task) -> "OwnMostBought":
        self.popular.fit(task)
        return self

    def recommend(self, case: Case, k: int) -> list[int]:
        tally: dict[int, tuple[int, int]] = {}
        for position, basket in enumerate(case.history):
            for item in basket:
                count, _ = tally.get(item, (0, 0))
                tally[item] = (count + 1, position)
        ranked = sorted(tally, key=lambda i: (-tally[i][0], -tally[i][1], i))
        return _fill(ranked, self.popular.order, k)


@dataclass
class ItemKNN:
    """Item-to-item CF: cosine similarity of items over the baskets (or sessions) they share,
    each item keeping its `neighbours` most similar; a history scores items by summed
    similarity (the last `window` items only, when set), an item counting `self_weight` as
    similar to itself (so what the history holds can come back)."""
    neighbours: int = 100
    window: int | None = None
    self_weight: float = 0.0
    name: str = "item_knn"
    popular: Popularity = field(default_factory=Popularity)

    def fit(self, task: Task) -> "ItemKNN":
        self.popular.fit(task)
        n = len(task.vocabulary)
        left, right = [], []
        for basket in task.train:
            items = np.unique(np.asarray(basket[:50], dtype=np.int64))
            if len(items) < 2:
                continue
            a, b = np.meshgrid(items, items)
            mask = a != b
            left.append(a[mask])
            right.append(b[mask])
        occurrences = np.zeros(n)
        for basket in task.train:
            np.add.at(occurrences, np.unique(basket), 1.0)
        self.index = np.full((n, self.neighbours), -1, dtype=np.int64)
        self.weight = np.zeros((n, self.neighbours))
        if not left:
            return self
        codes, together = np.unique(np.concatenate(left) * n + np.concatenate(right), return_counts=True)
        i, j = codes // n, codes % n
        sim = together / np.sqrt(occurrences[i] * occurrences[j])
        order = np.lexsort((-sim, i))
        i, j, sim = i[order], j[order], sim[order]
        starts = np.searchsorted(i, np.arange(n))
        ends = np.searchsorted(i, np.arange(n), side="right")
        for item in range(n):
            take = min(ends[item] - starts[item], self.neighbours)
            self.index[item, :take] = j[starts[item]:starts[item] + take]
            self.weight[item, :take] = sim[starts[item]:starts[item] + take]
        return self

    def recommend(self, case: Case, k: int) -> list[int]:
        history = flat(case.history)
        if self.window:
            history = history[-self.window:]
        scores = np.zeros(self.index.shape[0])
        for item in history:
            neighbours = self.index[item]
            valid = neighbours >= 0
            np.add.at(scores, neighbours[valid], self.weight[item][valid])
            scores[item] += self.self_weight
        ranked = [i for i in _top(scores, k) if scores[i] > 0]
        return _fill(ranked, self.popular.order, k)


@dataclass
class LastItemTransitions:
    """What most often came right after the session's last item, the item itself included
    when shoppers click it again (then popularity)."""
    name: str = "last_item_transitions"
    popular: Popularity = field(default_factory=Popularity)

    def fit(self, task: Task) -> "LastItemTransitions":
        self.popular.fit(task)
        self.next: dict[int, dict[int, int]] = {}
        for session in task.train:
            for a, b in zip(session, session[1:]):
                row = self.next.setdefault(a, {})
                row[b] = row.get(b, 0) + 1
        return self

    def recommend(self, case: Case, k: int) -> list[int]:
        last = flat(case.history)[-1]
        row = self.next.get(last, {})
        ranked = sorted(row, key=lambda b: (-row[b], b))[:k]
        return _fill(ranked, self.popular.order, k)


def evaluate(model: Recommender, task: Task, metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-case metric values at the task's cutoff."""
    out = {m: np.zeros(len(task.cases)) for m in metrics}
    for c, case in enumerate(task.cases):
        ranked = model.recommend(case, task.k)
        for m in metrics:
            out[m][c] = METRICS[m](ranked, case.target, task.k)
    return out


def tune_item_knn(validation: Task, metric: str, windows: tuple = (None,),
                  neighbours: tuple = (20, 50, 100, 200, 500, 1000),
                  self_weights: tuple = (0.0, 0.5, 1.0, 2.0)) -> tuple[dict, float]:
    """The neighbourhood, history window and self-similarity that score best on validation."""
    best, best_score = {}, -1.0
    for window in windows:
        for n in neighbours:
            model = ItemKNN(neighbours=n, window=window).fit(validation)
            for self_weight in self_weights:
                model.self_weight = self_weight
                score = float(evaluate(model, validation, (metric,))[metric].mean())
                if score > best_score:
                    best, best_score = {"neighbours": n, "window": window, "self_weight": self_weight}, score
    return best, best_score
