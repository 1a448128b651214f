"""The user tower's inputs, assembled one way for training (from the offline join) and for
serving (from the online store): the recent bought and viewed products as item indices, and a
few dense signals. The model version's vocabulary maps product ids to indices (0: unknown)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HISTORY = 20
PLACEMENTS = ("home", "product_page", "cart", "email")
USER_SCALARS = ("user_purchase_count_7d", "user_views_24h", "user_order_count_30d", "user_avg_order_value_30d")
USER_SEQUENCES = ("user_recent_bought", "user_recent_viewed")
SESSION_SEQUENCES = ("session_recent_viewed",)
AFFINITY = "user_category_affinity_30d"
DENSE = len(USER_SCALARS) + 16 + len(PLACEMENTS)
# What tells a lapsed customer: a purchase life, and the day it last bought (features/definitions.py).
LIFE = ("user_purchase_days", "user_last_purchase_day")
DAY_MS = 86_400_000


@dataclass
class UserInputs:
    bought: np.ndarray  # int64 [B, HISTORY], item index + 1, newest first, 0 pads
    viewed: np.ndarray  # int64 [B, HISTORY]
    dense: np.ndarray  # float32 [B, DENSE]

    def as_feeds(self) -> dict[str, np.ndarray]:
        return {"bought": self.bought, "viewed": self.viewed, "dense": self.dense}


def index_sequences(sequences: list[list[str]], vocabulary: dict[str, int]) -> np.ndarray:
    """Product ids -> item index + 1 (unknown products count as 0, like padding)."""
    out = np.zeros((len(sequences), HISTORY), dtype=np.int64)
    for row, items in enumerate(sequences):
        for col, product in enumerate(items[:HISTORY]):
            out[row, col] = vocabulary.get(product, -1) + 1
    return out


def history_items(bought: list[str], viewed: list[str], vocabulary: dict[str, int]) -> list[int]:
    """Item indices of what the owner bought then viewed, oldest first (the sequences come
    newest first), unknown products left out: what the blend's signals read."""
    out = []
    for sequence in (bought, viewed):
        out.extend(vocabulary[p] for p in reversed(sequence) if p in vocabulary)
    return out


def dense_inputs(values: np.ndarray, layout: list[tuple[str, int, int]], placements: list[str]) -> np.ndarray:
    """log1p of the user's counts and amounts, the category affinity, the placement one-hot.
    `values`/`layout` come from a gather of USER_SCALARS + (AFFINITY,) in any order."""
    columns = {name: (col, width) for name, col, width in layout}
    rows = values.shape[0]
    out = np.zeros((rows, DENSE), dtype=np.float32)
    for j, name in enumerate(USER_SCALARS):
        if name in columns:
            out[:, j] = np.log1p(np.maximum(values[:, columns[name][0]], 0.0))
    if AFFINITY in columns:
        col, width = columns[AFFINITY]
        out[:, len(USER_SCALARS):len(USER_SCALARS) + width] = values[:, col:col + width]
    base = len(USER_SCALARS) + 16
    for row, placement in enumerate(placements):
        out[row, base + (PLACEMENTS.index(placement) if placement in PLACEMENTS else 0)] = 1.0
    return out


def lapsed_moment(values: np.ndarray, layout: list[tuple[str, int, int]]) -> int | None:
    """For one user's gather of USER_SCALARS + (AFFINITY,) + LIFE: the end of the day they last
    bought (ms) when every short window the tower reads is empty yet they have bought before (a
    customer back after months), else None. The tower learned from shoppers' states at their
    visits; the nearest such state of a lapsed customer is their last one, so their dense inputs
    are read as of then (their sequences are their whole recent life either way)."""
    columns = {name: (col, width) for name, col, width in layout}
    days_col, last_col = columns["user_purchase_days"][0], columns["user_last_purchase_day"][0]
    short = [c for name in (*USER_SCALARS, AFFINITY) for c in range(columns[name][0], sum(columns[name]))]
    if values[0, days_col] <= 0 or np.any(values[0, short] != 0):
        return None
    return (int(values[0, last_col]) + 1) * DAY_MS - 1


# What drift is measured on (server/experiments/drift.py): the user tower's dense inputs (the
# category affinity summarised by its strongest share, the placement by its index) and how many
# of the shopper's bought and viewed products the version knows
DRIFT_INPUTS = (*(f"{name}_log" for name in USER_SCALARS), "top_category_affinity", "bought_known", "viewed_known",
                "placement")


def drift_rows(inputs: UserInputs) -> np.ndarray:
    """[B, len(DRIFT_INPUTS)] from the user tower's own inputs."""
    dense = inputs.dense
    scalars = len(USER_SCALARS)
    out = np.empty((len(dense), len(DRIFT_INPUTS)), np.float64)
    out[:, :scalars] = dense[:, :scalars]
    out[:, scalars] = dense[:, scalars:scalars + 16].max(axis=1)
    out[:, scalars + 1] = np.count_nonzero(inputs.bought, axis=1)
    out[:, scalars + 2] = np.count_nonzero(inputs.viewed, axis=1)
    out[:, scalars + 3] = dense[:, scalars + 16:].argmax(axis=1)
    return out
