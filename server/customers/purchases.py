"""Purchases out of an event file: who bought, on which day, for how much."""
from __future__ import annotations

from pathlib import Path

import numpy as np

DAY_MS = 86_400_000


def read_purchases(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, day numbers, spend) of every purchase event of a known shopper; spend as the
    feature store reads it: the amount, or the price times the quantity. The file is streamed:
    only these three columns are held, whatever its size. A malformed line raises ValueError
    naming it."""
    from ..features.events import EventError
    from ..features.formats import iter_records

    users, stamps, spend = [], [], []
    for number, record in iter_records(path):
        if isinstance(record, EventError):
            raise ValueError(f"{path}:{number}: {record}")
        if record["event_type"] != "purchase" or not record.get("user_id"):
            continue
        users.append(record["user_id"])
        stamps.append(record["timestamp"])  # ms since 1970, as the reader parsed it
        payload = record.get("payload") or {}
        amount = payload.get("amount")
        if amount is None:
            amount = (payload.get("price") or 0.0) * (payload.get("quantity") or 1.0)
        spend.append(float(amount))
    return (np.array(users, object), np.array(stamps, np.int64) // DAY_MS, np.array(spend, np.float64))
