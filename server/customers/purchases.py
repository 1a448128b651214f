"""Purchases out of an event file: who bought, on which day, for how much."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def read_purchases(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, day numbers, spend) of every purchase event of a known shopper; spend as the
    feature store reads it: the amount, or the price times the quantity."""
    from ..features.formats import read_records

    users, days, spend = [], [], []
    for record in read_records(path):
        if record.get("event_type") != "purchase" or not record.get("user_id"):
            continue
        users.append(record["user_id"])
        stamp = record["timestamp"]
        day = np.datetime64(stamp[:10], "D") if isinstance(stamp, str) else np.datetime64(int(stamp), "ms")
        days.append(day.astype("datetime64[D]").astype(np.int64))
        payload = record.get("payload") or {}
        amount = payload.get("amount")
        if amount is None:
            amount = (payload.get("price") or 0.0) * (payload.get("quantity") or 1.0)
        spend.append(float(amount))
    return np.array(users, object), np.array(days, np.int64), np.array(spend, np.float64)
