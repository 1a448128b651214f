"""A customer's whole purchase life as a row of numbers, read at any day: the inputs of the learned
customer model beside the BG/NBD quantities.

Every column is one the feature store keeps for a customer in bounded memory (the user_* features
of features/definitions.py: purchase days and spend over the whole life, the first and latest
purchase, purchases and spend in the store's 30- and 90-day windows), so the nightly batch, which
reads an event file here, and ScoreCustomers, which reads the store (store_lifetime.py), compute
the same numbers for the same events. A purchase day is a day with at least one purchase event;
the windows count purchase events, bucketed as the store buckets them. Everything is read from
the events up to `end_day` only (point in time)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rfm import Summary

# The order of the columns of LifetimeFeatures.matrix; the names are what reasons print.
FEATURES = (
    "purchase_days",  # all purchase days, the first included
    "days_since_first",
    "days_since_last",
    "mean_gap_days",  # NaN with one purchase day
    "silence_over_gap",  # days since the last over the mean gap
    "purchases_last_30_days",
    "purchases_last_90_days",
    "total_spend",
    "mean_day_spend",
    "spend_last_90_days",
    "share_of_spend_in_last_90_days",  # above the share of life they cover: spending more lately
)
# The store's windows as (bucket days, buckets): definitions.WINDOWS["30d"] and ["90d"].
WINDOW_30, WINDOW_90 = (1, 30), (6, 15)


@dataclass
class LifetimeFeatures:
    user_ids: np.ndarray  # object, sorted
    matrix: np.ndarray  # float64 [customers, len(FEATURES)]

    def column(self, name: str) -> np.ndarray:
        return self.matrix[:, FEATURES.index(name)]


def in_window(days: np.ndarray, end_day: int, window: tuple[int, int]) -> np.ndarray:
    """Which days a store window read at end_day still holds: the `buckets` buckets of
    `bucket_days` ending with end_day's (buckets counted from the epoch, as the store's)."""
    bucket_days, buckets = window
    return days // bucket_days > end_day // bucket_days - buckets


def lifetime_features(user_ids: np.ndarray, days: np.ndarray, spend: np.ndarray, end_day: int) -> LifetimeFeatures:
    """From purchase events (user, day number, amount); customers sorted by id."""
    keep = days <= end_day
    user_ids, days, spend = user_ids[keep], days[keep].astype(np.int64), spend[keep].astype(np.float64)
    users, who = np.unique(user_ids, return_inverse=True)
    n = len(users)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, who, days)
    last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last, who, days)
    origin = days.min() if len(days) else 0
    purchase_days = np.bincount(np.unique(who.astype(np.int64) * (1 << 32) + (days - origin)) >> 32,
                                minlength=n).astype(np.float64)
    recent_30, recent_90 = in_window(days, end_day, WINDOW_30), in_window(days, end_day, WINDOW_90)
    columns = {
        "purchase_days": purchase_days, "first_day": first, "last_day": last,
        "purchases_30": np.bincount(who, weights=recent_30, minlength=n),
        "purchases_90": np.bincount(who, weights=recent_90, minlength=n),
        # spend as the store answers it: summed in float64, read in float32
        "total_spend": _as_read(np.bincount(who, weights=spend, minlength=n)),
        "spend_90": _as_read(np.bincount(who, weights=spend * recent_90, minlength=n))}
    return assemble(users, end_day, **columns)


def _as_read(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32).astype(np.float64)


def assemble(users: np.ndarray, end_day: int, purchase_days, first_day, last_day, purchases_30, purchases_90,
             total_spend, spend_90) -> LifetimeFeatures:
    """The feature matrix from what the store keeps per customer (the batch computes the same)."""
    age = (end_day - first_day).astype(np.float64)
    silent = (end_day - last_day).astype(np.float64)
    repeat = purchase_days - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_gap = np.where(repeat > 0, (age - silent) / repeat, np.nan)
        matrix = np.column_stack([
            purchase_days, age, silent, mean_gap, silent / mean_gap, purchases_30, purchases_90, total_spend,
            total_spend / purchase_days, spend_90, np.where(total_spend > 0, spend_90 / total_spend, np.nan)])
    return LifetimeFeatures(users, matrix)


def summary_of(lifetime: LifetimeFeatures) -> Summary:
    """What BG/NBD and Gamma-Gamma read, from the lifetime row: frequency, recency and age exactly
    as rfm.summarize gives them; the spend per purchase day over all the days, since the store
    keeps no first day's spend apart (rfm.summarize leaves it out of `monetary`)."""
    column = lifetime.column
    days, age = column("purchase_days"), column("days_since_first")
    return Summary(lifetime.user_ids, days - 1, age - column("days_since_last"), age, column("mean_day_spend"),
                   column("mean_day_spend"))
