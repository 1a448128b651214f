"""Customers' lifetime features read from the feature store (embedded or Redis) at a moment: the
same numbers lifetime.lifetime_features computes from an event file, so a model the nightly
batch trained answers ScoreCustomers for the store's customers as it scored them."""
from __future__ import annotations

from typing import Any

import numpy as np

from .lifetime import LifetimeFeatures, assemble

DAY_MS = 86_400_000
# What the store keeps per customer (features/definitions.py), in the order read.
STORE_FEATURES = ("user_purchase_days", "user_lifetime_spend", "user_first_purchase_day", "user_last_purchase_day",
                  "user_purchases_30d", "user_purchases_90d", "user_spend_90d")
# Keys per store read: a Redis read answers in one script reply, which Lua bounds.
READ_CHUNK = 1_000


def from_block(keys: list[str], values: np.ndarray, missing: np.ndarray, as_of: int) -> tuple[LifetimeFeatures,
                                                                                               np.ndarray]:
    """(the lifetime rows of the customers who bought, which of `keys` they are) from a store
    read of STORE_FEATURES."""
    column = {name: values[:, i].astype(np.float64) for i, name in enumerate(STORE_FEATURES)}
    bought = (missing[:, 0] == 0) & (column["user_purchase_days"] > 0)
    pick = {name: v[bought] for name, v in column.items()}
    first_day, last_day = pick["user_first_purchase_day"], pick["user_last_purchase_day"]  # whole days, exact
    users = np.array(keys, object)[bought]
    lifetime = assemble(users, as_of // DAY_MS, pick["user_purchase_days"], first_day.astype(np.int64),
                        last_day.astype(np.int64), pick["user_purchases_30d"], pick["user_purchases_90d"],
                        pick["user_lifetime_spend"], pick["user_spend_90d"])
    return lifetime, bought


def read_lifetime(store: Any, keys: list[str], as_of: int | None = None) -> tuple[LifetimeFeatures, np.ndarray]:
    """From a FeatureStore (its clock when as_of is None), READ_CHUNK keys per read."""
    blocks = [store.read("user", keys[:READ_CHUNK], list(STORE_FEATURES), as_of)]
    as_of = store.watermark if as_of is None else as_of  # as the first read found it
    blocks += [store.read("user", keys[i:i + READ_CHUNK], list(STORE_FEATURES), as_of)
               for i in range(READ_CHUNK, len(keys), READ_CHUNK)]
    values = np.concatenate([b.values for b in blocks]) if blocks else np.zeros((0, len(STORE_FEATURES)), np.float32)
    missing = np.concatenate([b.missing for b in blocks]) if blocks else np.zeros((0, len(STORE_FEATURES)), np.uint8)
    return from_block(keys, values, missing, as_of)
