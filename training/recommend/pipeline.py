"""Training and offline evaluation of the recommender: features through the offline join (as
of each moment, no leakage), the two-tower model, and a blend with the signals good systems
use beside it (the customer's own repeat purchases, co-visitation with the recent items,
popularity) whose weights are tuned on validation."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from hanzo.server.experiments.drift import Reference
from hanzo.server.features.offline import get_historical_features
from hanzo.server.surfaces.recommend_inputs import (AFFINITY, DRIFT_INPUTS, HISTORY, SESSION_SEQUENCES, USER_SCALARS,
                                                    USER_SEQUENCES, UserInputs, drift_rows, dense_inputs,
                                                    history_items, index_sequences)
from hanzo.server.surfaces.recommend_signals import SIGNALS, Signals

from .baselines import ItemKNN
from .data import Case, Task
from .metrics import METRICS
from .two_tower import ItemFeatures, TrainingConfig, TwoTower

def user_inputs(records: list[dict], task: Task, rows: list[tuple[str, int]],
                placement: str = "home") -> tuple[UserInputs, list[list[int]]]:
    """The user tower's inputs for (owner, as_of) rows, read through the offline join, and each
    row's history for the blend's signals, as the server reads them."""
    vocabulary = task.vocabulary.index
    if task.entity == "user":
        names = list(USER_SCALARS) + [AFFINITY] + list(USER_SEQUENCES)
        got = get_historical_features(records, "user", rows, names)
        bought_seq, viewed_seq = got.sequences["user_recent_bought"], got.sequences["user_recent_viewed"]
        dense = dense_inputs(got.values, got.layout, [placement] * len(rows))
    else:
        got = get_historical_features(records, "session", rows, list(SESSION_SEQUENCES))
        bought_seq, viewed_seq = [[] for _ in rows], got.sequences["session_recent_viewed"]
        dense = dense_inputs(np.zeros((len(rows), 0), np.float32), [], [placement] * len(rows))
    inputs = UserInputs(index_sequences(bought_seq, vocabulary), index_sequences(viewed_seq, vocabulary), dense)
    return inputs, [history_items(b, v, vocabulary) for b, v in zip(bought_seq, viewed_seq)]


@dataclass
class Blend:
    weights: dict[str, float] = field(default_factory=lambda: {s: 1.0 if s == "two_tower" else 0.0 for s in SIGNALS})

    def score(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        return sum(self.weights[s] * parts[s] for s in SIGNALS)


def build_signals(task: Task, neighbours: int, window: int) -> Signals:
    knn = ItemKNN(neighbours=neighbours).fit(task)
    return Signals.from_sequences(task.train, len(task.vocabulary), knn.index, knn.weight, window)


def ranked(scores: np.ndarray, k: int) -> list[int]:
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")].tolist()


def evaluate_blend(blend: Blend, parts: list[dict[str, np.ndarray]], cases: list[Case], k: int,
                   metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
    out = {m: np.zeros(len(cases)) for m in metrics}
    for c, (case, p) in enumerate(zip(cases, parts)):
        top = ranked(blend.score(p), k)
        for m in metrics:
            out[m][c] = METRICS[m](top, case.target, k)
    return out


def tune_blend(parts: list[dict[str, np.ndarray]], cases: list[Case], k: int, metric: str,
               grid: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)) -> tuple[Blend, float]:
    """Coordinate search over the other signals' weights (two-tower fixed at 1), two sweeps."""
    blend = Blend()
    best = float(evaluate_blend(blend, parts, cases, k, (metric,))[metric].mean())
    for _, signal in itertools.product(range(2), SIGNALS[1:]):
        for weight in grid:
            trial = Blend({**blend.weights, signal: weight})
            score = float(evaluate_blend(trial, parts, cases, k, (metric,))[metric].mean())
            if score > best:
                blend, best = trial, score
    return blend, best


@dataclass
class Trained:
    model: TwoTower
    items: np.ndarray  # item embeddings
    signals: Signals
    users: np.ndarray  # the cases' user embeddings
    histories: list[list[int]]  # the cases' histories, as the server reads them
    case_parts: list[dict[str, np.ndarray]]
    inputs: UserInputs | None = None  # the cases' user tower inputs

    def rescore(self, task: Task, neighbours: int, window: int) -> "Trained":
        """The same model with the co-visitation signal built another way."""
        signals = build_signals(task, neighbours, window)
        parts = [signals.parts(self.items, u, h, []) for u, h in zip(self.users, self.histories)]
        return Trained(self.model, self.items, signals, self.users, self.histories, parts, self.inputs)


def tune_signals(trained: Trained, task: Task, metric: str,
                 settings: tuple = ((50, 3), (200, HISTORY))) -> tuple[Trained, Blend, float, tuple]:
    """The co-visitation setting and blend weights that score best on validation."""
    best = None
    for neighbours, window in settings:
        candidate = trained.rescore(task, neighbours, window)
        blend, score = tune_blend(candidate.case_parts, task.cases, task.k, metric)
        if best is None or score > best[2]:
            best = (candidate, blend, score, (neighbours, window))
    return best


def train_and_score(records: list[dict], task: Task, config: TrainingConfig, log=print,
                    neighbours: int = 200, window: int = HISTORY, catalog: dict[str, dict] | None = None) -> Trained:
    """Fit the two-tower on the task's examples and compute every case's signals."""
    rows = [(owner, as_of) for owner, as_of, _ in task.examples] + [(c.key, c.as_of) for c in task.cases]
    inputs, histories = user_inputs(records, task, rows)
    n_examples = len(task.examples)
    example_rows, positives = [], []
    for r, (_, _, items) in enumerate(task.examples):
        for item in items:
            example_rows.append(r)
            positives.append(item)
    example_rows = np.asarray(example_rows)
    train_inputs = UserInputs(inputs.bought[example_rows], inputs.viewed[example_rows], inputs.dense[example_rows])
    features = (ItemFeatures.from_catalog(task.vocabulary.ids, catalog) if catalog
                else ItemFeatures.empty(len(task.vocabulary)))
    model = TwoTower(len(task.vocabulary), features)
    model.fit(train_inputs, np.asarray(positives, dtype=np.int64), config, log)
    case_inputs = UserInputs(inputs.bought[n_examples:], inputs.viewed[n_examples:], inputs.dense[n_examples:])
    users = model.user_embeddings(case_inputs)
    items = model.item_embeddings()
    signals = build_signals(task, neighbours, window)
    case_histories = histories[n_examples:]
    parts = [signals.parts(items, u, h, []) for u, h in zip(users, case_histories)]
    return Trained(model, items, signals, users, case_histories, parts, case_inputs)


def recommend_reference(trained: Trained, blend: Blend) -> Reference | None:
    """The drift reference (server/experiments/drift.py): each case the model ranks for (one
    with a history: the others get the cold-start list), described as the server describes a
    shopper (recommend_inputs.drift_rows), and the user tower's affinity for the first product
    the blend ranks."""
    ranked_for = [c for c, history in enumerate(trained.histories) if history]
    if trained.inputs is None or not ranked_for:
        return None
    rows = drift_rows(trained.inputs)[ranked_for]
    first = np.asarray([int(np.argmax(blend.score(trained.case_parts[c]))) for c in ranked_for])
    scores = np.einsum("cd,cd->c", trained.items[first], trained.users[ranked_for])
    return Reference.from_rows(list(DRIFT_INPUTS), rows, scores)
