"""Evaluation tasks from canonical events: next-basket (each customer's last basket, e.g.
Ta-Feng) and next-click (each session's last click, e.g. YOOCHOOSE), each with a validation
split taken the same way one step earlier, so baselines and models are tuned on validation
and scored once on test."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hanzo.server.features.formats import iter_records


@dataclass
class Vocabulary:
    ids: list[str]
    index: dict[str, int]

    @classmethod
    def build(cls, items) -> "Vocabulary":
        ids = sorted(set(items))
        return cls(ids, {item: i for i, item in enumerate(ids)})

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Case:
    """One prediction to make: the history before it (item indices, oldest first, grouped in
    baskets where the task has baskets), the items that came next, and the moment just before
    them (ms) at which a model may look at the owner's features."""
    key: str
    history: list[list[int]]
    target: list[int]
    as_of: int = 0


@dataclass
class Task:
    name: str
    vocabulary: Vocabulary
    train: list[list[int]]  # baskets or sessions the models learn from (item indices)
    cases: list[Case]  # what they are scored on
    k: int  # the cutoff of the task's metrics
    entity: str = "user"  # whose features describe a case: user (baskets) or session (clicks)
    # Training moments for models that learn from features: (owner, as_of ms, next items).
    examples: list[tuple[str, int, list[int]]] = None


def _purchases_by_basket(path: Path, event_type: str):
    baskets: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    stamps: dict[str, dict[str, int]] = defaultdict(dict)
    for _, record in iter_records(path):
        if not isinstance(record, dict) or record["event_type"] != event_type:
            continue
        owner = record["user_id"] or record["session_id"]
        basket = record["session_id"]
        baskets[owner][basket].append(record["payload"]["product_id"])
        stamps[owner].setdefault(basket, record["timestamp"])
        stamps[owner][basket] = min(stamps[owner][basket], record["timestamp"])
    return baskets, stamps


def next_basket_tasks(path: Path, k: int = 10) -> tuple[Task, Task]:
    """(validation, test): predict each customer's last basket from the ones before it; the
    validation task predicts the second-to-last from the ones before that. Customers need at
    least three baskets to count."""
    baskets, stamps = _purchases_by_basket(path, "purchase")
    vocabulary = Vocabulary.build(item for user in baskets.values() for b in user.values() for item in b)
    ordered: dict[str, list[list[int]]] = {}
    starts: dict[str, list[int]] = {}
    for user, by_basket in baskets.items():
        order = sorted(by_basket, key=lambda b: (stamps[user][b], b))
        ordered[user] = [sorted({vocabulary.index[i] for i in by_basket[b]}) for b in order]
        starts[user] = [stamps[user][b] for b in order]
    tasks = []
    for held_out in (2, 1):  # validation holds out the last two baskets, test the last one
        train, cases, examples = [], [], []
        for user, seq in sorted(ordered.items()):
            kept = seq[:-held_out] if len(seq) > held_out else []
            train.extend(kept)
            examples.extend((user, starts[user][t] - 1, seq[t]) for t in range(1, len(kept)))
            if len(seq) >= 3:
                cases.append(Case(user, kept, seq[-held_out], starts[user][-held_out] - 1))
        tasks.append(Task(f"next_basket_{'validation' if held_out == 2 else 'test'}", vocabulary, train, cases, k,
                          "user", examples))
    return tasks[0], tasks[1]


def next_click_tasks(path: Path, k: int = 20, test_share: float = 0.1) -> tuple[Task, Task]:
    """(validation, test): sessions ordered by start time; the last `test_share` are test, the
    `test_share` before them validation, the rest train. Each scored session predicts its last
    click from the clicks before it."""
    sessions: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for _, record in iter_records(path):
        if isinstance(record, dict) and record["event_type"] == "product_view":
            sessions[record["session_id"]].append((record["timestamp"], record["payload"]["product_id"]))
    ordered = sorted(sessions.items(), key=lambda kv: (min(t for t, _ in kv[1]), kv[0]))
    n = len(ordered)
    cut_test, cut_valid = int(n * (1 - test_share)), int(n * (1 - 2 * test_share))
    vocabulary = Vocabulary.build(item for _, clicks in ordered for _, item in clicks)

    def clicks(session) -> list[int]:
        return [vocabulary.index[item] for _, item in sorted(session[1])]

    def times(session) -> list[int]:
        return [t for t, _ in sorted(session[1])]

    def cases(chunk) -> list[Case]:
        out = []
        for key, session in chunk:
            row, stamps = clicks((key, session)), times((key, session))
            if len(row) >= 2:
                out.append(Case(key, [[item] for item in row[:-1]], [row[-1]], stamps[-1] - 1))
        return out

    def examples(chunk) -> list[tuple[str, int, list[int]]]:
        out = []
        for key, session in chunk:
            row, stamps = clicks((key, session)), times((key, session))
            out.extend((key, stamps[t] - 1, [row[t]]) for t in range(1, len(row)))
        return out

    validation = Task("next_click_validation", vocabulary, [clicks(s) for s in ordered[:cut_valid]],
                      cases(ordered[cut_valid:cut_test]), k, "session", examples(ordered[:cut_valid]))
    test = Task("next_click_test", vocabulary, [clicks(s) for s in ordered[:cut_test]], cases(ordered[cut_test:]), k,
                "session", examples(ordered[:cut_test]))
    return validation, test


def flat(history: list[list[int]]) -> list[int]:
    return [item for basket in history for item in basket]


def counts(train: list[list[int]], n_items: int) -> np.ndarray:
    out = np.zeros(n_items)
    for basket in train:
        np.add.at(out, basket, 1.0)
    return out
