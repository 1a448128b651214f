"""Sales tables (`date,location,sku,units,promo,holiday,open`, ../shared/data/README.md) as one
Series per (location, sku). A row with `units` left empty is a future step whose promo,
holiday and open flags are already known (a planned promotion, a store closing)."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from .calendar import Assumptions, infer_future
from .forecast import Series

COLUMNS = ("date", "location", "sku", "units", "promo", "holiday", "open")


def _flag(value: str, default: float) -> float:
    return float(value) if value not in ("", None) else default


def read_sales(path: Path) -> tuple[dict[tuple[str, str], Series], dict[tuple[str, str], Series]]:
    """(history, known future) per (location, sku), each in date order."""
    rows: dict[tuple[str, str], list] = defaultdict(list)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing} (expected {', '.join(COLUMNS)})")
        for number, row in enumerate(reader, start=2):
            try:
                rows[(row["location"], row["sku"])].append(
                    (np.datetime64(row["date"], "D"), float(row["units"]) if row["units"] != "" else np.nan,
                     _flag(row["promo"], 0.0), _flag(row["holiday"], 0.0), _flag(row["open"], 1.0)))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    history, future = {}, {}
    for key, items in rows.items():
        items.sort(key=lambda item: item[0])
        columns = [np.asarray(c) for c in zip(*items)]
        series = Series(columns[0].astype("datetime64[D]"), columns[1].astype(np.float64), *(c.astype(np.float64)
                                                                                                for c in columns[2:]))
        known = ~np.isnan(series.units)
        history[key] = series.take(np.flatnonzero(known))
        if (~known).any():
            future[key] = series.take(np.flatnonzero(~known))
    return history, future


def regular_steps(series: Series) -> Series:
    """The series on every step from its first date to its last; a missing date is a closed
    step that sold nothing (a store shut for a refit). The statistical models need no gaps."""
    if len(series) < 2:
        return series
    step = np.timedelta64(series.step_days, "D")
    dates = np.arange(series.dates[0], series.dates[-1] + step, step)
    if len(dates) == len(series):
        return series
    where = ((series.dates - dates[0]) // step).astype(np.int64)
    columns = [np.zeros(len(dates)) for _ in range(4)]
    for column, values in zip(columns, (series.units, series.promo, series.holiday, series.open)):
        column[where] = values
    return Series(dates, *columns)


def future_steps(history: Series, horizon: int, known: Series | None = None) -> tuple[Series, Assumptions | None]:
    """The next `horizon` steps after the history: the known future rows where given; where
    not, the calendar the history implies (inventory/calendar.py), with what was assumed
    (None when every step was known)."""
    step = np.timedelta64(history.step_days, "D")
    dates = history.dates[-1] + step * np.arange(1, horizon + 1)
    future, assumed = infer_future(history, dates)
    unknown = np.ones(horizon, bool)
    if known is not None:
        where = {d: i for i, d in enumerate(known.dates.tolist())}
        for h, d in enumerate(dates.tolist()):
            i = where.get(d)
            if i is not None:
                future.promo[h], future.holiday[h], future.open[h] = known.promo[i], known.holiday[i], known.open[i]
                unknown[h] = False
    return future, (assumed if unknown.any() else None)
