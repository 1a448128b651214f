"""A customer's whole purchase life as a row of numbers, read at any day: the inputs of the learned
customer model beside the BG/NBD quantities. A purchase is a customer-day with at least one
order, as in rfm.summarize, and everything is read from the days up to `end_day` only, so the
same function gives training rows at a past cut and serving rows today (point in time)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The order of the columns of LifetimeFeatures.matrix; the names are what reasons print.
FEATURES = (
    "purchase_days",  # all purchase days, the first included
    "days_since_first",
    "days_since_last",
    "mean_gap_days",  # NaN with one purchase day
    "silence_over_gap",  # days since the last over the mean gap
    "last_gap_days",
    "gap_spread_days",  # standard deviation of the gaps; NaN under two gaps
    "days_last_30",
    "days_last_90",
    "share_of_days_in_second_half",  # of the life so far: above 0.5 buying more lately
    "total_spend",
    "mean_day_spend",
    "first_day_spend",
    "spend_last_90",
    "largest_day_spend",
)


@dataclass
class LifetimeFeatures:
    user_ids: np.ndarray  # object, sorted
    matrix: np.ndarray  # float64 [customers, len(FEATURES)]

    def column(self, name: str) -> np.ndarray:
        return self.matrix[:, FEATURES.index(name)]


def customer_days(user_ids: np.ndarray, days: np.ndarray, spend: np.ndarray, end_day: int):
    """(customers, each customer-day's customer index, its day, its spend), the days sorted within
    each customer; orders after end_day are left out."""
    keep = days <= end_day
    user_ids, days, spend = user_ids[keep], days[keep].astype(np.int64), spend[keep].astype(np.float64)
    users, user_index = np.unique(user_ids, return_inverse=True)
    origin = days.min() if len(days) else 0
    keys, inverse = np.unique(user_index.astype(np.int64) * (1 << 32) + (days - origin), return_inverse=True)
    return (users, (keys >> 32).astype(np.int64), (keys & 0xFFFFFFFF) + origin,
            np.bincount(inverse, weights=spend, minlength=len(keys)))


def lifetime_features(user_ids: np.ndarray, days: np.ndarray, spend: np.ndarray, end_day: int) -> LifetimeFeatures:
    users, who, day, day_spend = customer_days(user_ids, days, spend, end_day)
    n = len(users)
    count = np.bincount(who, minlength=n).astype(np.float64)
    ends = np.cumsum(count).astype(np.int64)
    first, last = day[ends - count.astype(np.int64)], day[ends - 1]
    age, silent = (end_day - first).astype(np.float64), (end_day - last).astype(np.float64)
    repeat = count - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_gap = np.where(repeat > 0, (last - first) / repeat, np.nan)
        same = np.r_[False, who[1:] == who[:-1]]
        gap = np.where(same, np.diff(day, prepend=day[:1]), 0).astype(np.float64)
        gaps_sq = np.bincount(who, weights=gap * gap, minlength=n)
        spread = np.where(repeat > 1, np.sqrt(np.maximum(gaps_sq / repeat - mean_gap ** 2, 0.0)), np.nan)
        last_gap = np.where(repeat > 0, gap[ends - 1], np.nan)
        recent = lambda window: np.bincount(who, weights=(day > end_day - window), minlength=n)  # noqa: E731
        midpoint = first + age / 2
        second_half = np.bincount(who, weights=(day > midpoint[who]), minlength=n) / count
        total = np.bincount(who, weights=day_spend, minlength=n)
        largest = np.zeros(n)
        np.maximum.at(largest, who, day_spend)
        matrix = np.column_stack([
            count, age, silent, mean_gap, silent / mean_gap, last_gap, spread, recent(30), recent(90),
            second_half, total, total / count, day_spend[ends - count.astype(np.int64)],
            np.bincount(who, weights=day_spend * (day > end_day - 90), minlength=n), largest])
    return LifetimeFeatures(users, matrix)
