"""Each customer's purchase history in the quantities the customer-base models read, with a
purchase counted as a customer-day with at least one order (the literature's convention):

- `frequency`: repeat purchase days (the days after the first);
- `recency`: days from the first purchase day to the last;
- `age` (T): days from the first purchase day to the end of the observation;
- `monetary`: the mean spend of the repeat purchase days (0 without any);
- `first_spend`: the first day's spend, kept apart as the literature keeps it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_MS = 86_400_000


@dataclass
class Summary:
    user_ids: np.ndarray  # object
    frequency: np.ndarray  # float64
    recency: np.ndarray
    age: np.ndarray
    monetary: np.ndarray
    first_spend: np.ndarray

    def __len__(self) -> int:
        return len(self.user_ids)

    def take(self, rows) -> "Summary":
        return Summary(*(getattr(self, f)[rows] for f in ("user_ids", "frequency", "recency", "age", "monetary",
                                                             "first_spend")))


def summarize(user_ids: np.ndarray, days: np.ndarray, spend: np.ndarray, end_day: int) -> Summary:
    """`days`: each order's day number (whole days since any epoch); orders after `end_day` are
    left out (the observation ends at the close of `end_day`)."""
    keep = days <= end_day
    user_ids, days, spend = user_ids[keep], days[keep].astype(np.int64), spend[keep].astype(np.float64)
    users, user_index = np.unique(user_ids, return_inverse=True)
    # one row per customer-day, its spend summed
    key = user_index.astype(np.int64) * (1 << 32) + (days - days.min() if len(days) else days)
    unique_keys, day_index = np.unique(key, return_inverse=True)
    day_spend = np.bincount(day_index, weights=spend, minlength=len(unique_keys))
    day_user = (unique_keys >> 32).astype(np.int64)
    day_number = (unique_keys & 0xFFFFFFFF) + (days.min() if len(days) else 0)
    count = np.bincount(day_user, minlength=len(users)).astype(np.float64)
    first = np.full(len(users), np.iinfo(np.int64).max)
    np.minimum.at(first, day_user, day_number)
    last = np.full(len(users), np.iinfo(np.int64).min)
    np.maximum.at(last, day_user, day_number)
    is_first = day_number == first[day_user]
    first_spend = np.bincount(day_user[is_first], weights=day_spend[is_first], minlength=len(users))
    repeat_spend = np.bincount(day_user[~is_first], weights=day_spend[~is_first], minlength=len(users))
    frequency = count - 1
    monetary = np.divide(repeat_spend, frequency, out=np.zeros(len(users)), where=frequency > 0)
    return Summary(users, frequency, (last - first).astype(np.float64), (end_day - first).astype(np.float64),
                   monetary, first_spend)
