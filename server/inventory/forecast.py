"""Demand forecasts for one series (a product, or a store's total, at one location): the
paper's `y = trend + season + promo + holiday + noise`, fitted on the log scale by ridge least
squares so the effects multiply (a promotion lifts a busy day more than a quiet one):

- season: the day of the week (daily series) and the time of year (Fourier terms), and for
  weekly series the same weeks one and two years before (52 weeks is too many effects to fit
  from two years, but last years' values carry the shape, holidays included);
- trend: a straight line in time, and the level of the last weeks against the same weeks a
  cycle before;
- promo and holiday flags, and the day of the week with a promotion (their effects differ);
- days the location is closed sell nothing and are left out of the fit.

Quantiles come from the fit's own residuals on the log scale (empirical, so skew is kept).
Everything is numpy on arrays: a series of 1,000 days fits in about a millisecond."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY = np.timedelta64(1, "D")


@dataclass
class Series:
    """One series at a fixed step (1 day or 7 days): dates (datetime64[D]), units, and the
    covariates known ahead for future dates (promo, holiday, open)."""
    dates: np.ndarray
    units: np.ndarray
    promo: np.ndarray
    holiday: np.ndarray
    open: np.ndarray

    @property
    def step_days(self) -> int:
        """The most common gap between dates, so one missing date does not change it."""
        if len(self.dates) < 2:
            return 1
        gaps = np.diff(self.dates).astype("timedelta64[D]").astype(np.int64)
        gaps = gaps[gaps > 0]
        return int(np.bincount(gaps).argmax()) if len(gaps) else 1

    @property
    def period(self) -> int:
        """Steps a season: 7 days, or 52 weeks."""
        return 52 if self.step_days == 7 else 7

    def take(self, rows) -> "Series":
        return Series(self.dates[rows], self.units[rows], self.promo[rows], self.holiday[rows], self.open[rows])

    def __len__(self) -> int:
        return len(self.dates)


@dataclass
class Forecast:
    dates: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def seasonal_naive(history: Series, horizon: int) -> np.ndarray:
    """The baseline: each future step gets the value one season before (the last season's
    values repeated past the first season)."""
    last = history.units[-history.period:]  # a history shorter than a season repeats what it has
    if not len(last):
        return np.zeros(horizon)
    return np.asarray([last[h % len(last)] for h in range(horizon)], np.float64)


def _design(dates: np.ndarray, promo: np.ndarray, holiday: np.ndarray, step_days: int, origin: np.datetime64,
            lags: np.ndarray | None) -> np.ndarray:
    t = ((dates - origin) / DAY).astype(np.float64) / 365.25
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.float64) / 365.25
    columns = [np.ones(len(dates)), t]
    for k in (1, 2, 3):
        columns += [np.sin(2 * np.pi * k * day_of_year), np.cos(2 * np.pi * k * day_of_year)]
    columns += [promo, holiday]
    if step_days == 1:
        weekday = ((dates.astype("datetime64[D]").astype(np.int64) + 3) % 7)  # 0 = Monday
        for d in range(1, 7):
            columns.append((weekday == d).astype(np.float64))
            columns.append(((weekday == d) & (promo > 0)).astype(np.float64))
    if lags is not None:
        columns += list(lags.T)
    return np.stack(columns, axis=1)


def _seasonal_lags(log_units: np.ndarray, index: np.ndarray, period: int, known: int) -> np.ndarray:
    """log units one and two seasons before each index (from the first `known` steps; NaN
    where out of range); for weekly series, where last years' values carry the shape."""
    out = np.full((len(index), 2), np.nan)
    for j, back in enumerate((period, 2 * period)):
        source = index - back
        ok = (source >= 0) & (source < known)
        out[ok, j] = log_units[source[ok]]
    return out


RIDGES = (0.3, 1.0, 3.0, 10.0, 30.0)


def choose_ridge(history: Series, horizon: int) -> float:
    """The shrinkage that forecast the history's own last `horizon` steps best (from the steps
    before them): a backtest inside the history, so the future is never looked at."""
    if len(history) < 3 * max(horizon, history.period):
        return 1.0
    past, recent = history.take(slice(0, len(history) - horizon)), history.take(slice(len(history) - horizon, None))
    errors = [np.mean(np.abs(fit_forecast(past, recent, r).mean - recent.units)) for r in RIDGES]
    return RIDGES[int(np.argmin(errors))]


def fit_forecast(history: Series, future: Series, ridge: float | None = None,
                 levels: tuple[float, float] = (0.1, 0.9)) -> Forecast:
    """Forecast `future`'s dates (its promo, holiday and open flags known) from `history`;
    `ridge` None: chosen by choose_ridge."""
    if ridge is None:
        ridge = choose_ridge(history, len(future))
    step, period = history.step_days, history.period
    n, horizon = len(history), len(future)
    log_units = np.log1p(np.maximum(history.units, 0.0))
    origin = history.dates[0]
    weekly = step == 7
    lags_all = None
    if weekly:
        index = np.arange(n + horizon)
        known = _seasonal_lags(log_units, index, period, n)
        # A missing season (the first two years, or past the history) falls back on the other,
        # then on the series' mean, so every row has a value; the flags say which it is.
        fallback = np.nanmean(log_units) if n else 0.0
        first = np.where(np.isnan(known[:, 0]), np.where(np.isnan(known[:, 1]), fallback, known[:, 1]), known[:, 0])
        second = np.where(np.isnan(known[:, 1]), first, known[:, 1])
        lags_all = np.stack([first, second, np.isnan(known[:, 0]).astype(float)], axis=1)
    dates = np.concatenate([history.dates, future.dates])
    promo = np.concatenate([history.promo, future.promo]).astype(np.float64)
    holiday = np.concatenate([history.holiday, future.holiday]).astype(np.float64)
    x = _design(dates, promo, holiday, step, origin, lags_all)
    x_hist, x_future = x[:n], x[n:]
    fit_rows = history.open > 0
    if not fit_rows.any():  # never open: nothing to fit, nothing to sell
        zeros = np.zeros(horizon)
        return Forecast(future.dates, zeros, zeros.copy(), zeros.copy())
    a, y = x_hist[fit_rows], log_units[fit_rows]
    scale = np.maximum(a.std(axis=0), 1e-9)
    scale[0] = 1.0
    penalty = ridge * np.eye(a.shape[1])
    penalty[0, 0] = 0.0  # the intercept is not shrunk
    gram = (a / scale).T @ (a / scale) + penalty
    try:
        w = np.linalg.solve(gram, (a / scale).T @ y) / scale
    except np.linalg.LinAlgError:  # a short history where columns coincide: the least-squares solution
        w = np.linalg.lstsq(gram, (a / scale).T @ y, rcond=None)[0] / scale
    residuals = y - a @ w
    low_q, high_q = np.quantile(residuals, levels) if len(residuals) else (0.0, 0.0)
    center = x_future @ w
    # exp of the mean log is the median; the mean adds half the residual variance
    mean = np.expm1(center + 0.5 * residuals.var()) if len(residuals) else np.expm1(center)
    closed = future.open <= 0
    bands = (mean, np.expm1(center + low_q), np.expm1(center + high_q))
    out = [np.where(closed, 0.0, np.maximum(v, 0.0)) for v in bands]
    return Forecast(future.dates, *out)


def mase(actual: np.ndarray, forecast: np.ndarray, history: np.ndarray, period: int) -> float:
    """Mean absolute error scaled by the in-sample seasonal naive's."""
    scale = np.mean(np.abs(history[period:] - history[:-period])) if len(history) > period else np.nan
    return float(np.mean(np.abs(actual - forecast)) / scale) if scale > 0 else float("nan")


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    total = np.sum(np.abs(actual))
    return float(np.sum(np.abs(actual - forecast)) / total) if total > 0 else float("nan")
