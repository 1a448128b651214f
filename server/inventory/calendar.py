"""The calendar of future steps a sales table does not give: inferred from the series' history,
and said, so a forecast without future rows still knows that a store closed on every Sunday
of its history is closed on the next Sunday too.

- a weekday on which the location was closed on every one of its history (daily series; at
  least `MIN_WEEKS` of them seen) is closed in the future;
- a date the table marks as a holiday in at least two earlier years is a holiday on the same
  date ahead (a holiday that moves, as Easter does, is not), and closed where the location was
  closed on it the last time it came round;
- nothing else: no promotion is guessed, every other step is open.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .forecast import Series

MIN_WEEKS = 8  # a weekday closed fewer times than this says too little to call it a rule
MIN_YEARS = 2  # a holiday is carried by date only when the table marks that date in this many years
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass
class Assumptions:
    """What was inferred for one series, for the command to say."""
    closed_weekdays: list[str] = field(default_factory=list)
    holidays: list[str] = field(default_factory=list)  # future dates taken as holidays by date
    closed_holidays: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = []
        if self.closed_weekdays:
            parts.append(f"closed on {', '.join(self.closed_weekdays)} (closed on every one in its history)")
        if self.holidays:
            closed = f", closed on {', '.join(self.closed_holidays)}" if self.closed_holidays else ""
            parts.append(f"holidays by date on {', '.join(self.holidays)}{closed}")
        return "; ".join(parts) or "open every step, no holiday, no promotion"


def weekday(dates: np.ndarray) -> np.ndarray:
    """0 = Monday."""
    return (dates.astype("datetime64[D]").astype(np.int64) + 3) % 7


def infer_future(history: Series, dates: np.ndarray) -> tuple[Series, Assumptions]:
    """The future steps at `dates` with the flags the history implies, and what was assumed."""
    said = Assumptions()
    horizon = len(dates)
    promo, holiday, open_ = np.zeros(horizon), np.zeros(horizon), np.ones(horizon)
    if history.step_days == 1 and len(history):
        past_days = weekday(history.dates)
        ahead = weekday(dates)
        for day in range(7):
            seen = past_days == day
            if seen.sum() >= MIN_WEEKS and not (history.open[seen] > 0).any():
                open_[ahead == day] = 0.0
                said.closed_weekdays.append(WEEKDAYS[day] + "s")
    marked = np.flatnonzero(history.holiday > 0)
    if len(marked):
        # the same date a year on (a weekly table's step moves a day or two a year: within 3
        # days), marked in at least two years: a holiday that moves (Easter) is never carried
        tolerance = 0 if history.step_days == 1 else 3
        past_days, ahead_days = _day_of_year(history.dates[marked]), _day_of_year(dates)
        past_years = history.dates[marked].astype("datetime64[Y]")
        for h in range(horizon):
            gap = np.abs(past_days - ahead_days[h])
            near = np.flatnonzero(np.minimum(gap, 365 - gap) <= tolerance)
            if len(np.unique(past_years[near])) < MIN_YEARS:
                continue
            i = marked[near[-1]]  # the last time it came round
            holiday[h] = 1.0
            said.holidays.append(str(dates[h]))
            if history.open[i] <= 0:
                open_[h] = 0.0
                said.closed_holidays.append(str(dates[h]))
    return Series(dates, np.full(horizon, np.nan), promo, holiday, open_), said


def _day_of_year(dates: np.ndarray) -> np.ndarray:
    """0 for January 1; February 29 and later count as in a common year, so a date keeps its
    number from year to year."""
    days = dates.astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    number = (days - years.astype("datetime64[D]")).astype(np.int64)
    year = years.astype(np.int64) + 1970
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    return np.where(leap & (number >= 59), number - 1, number)
