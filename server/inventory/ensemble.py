"""Forecasts for a whole sales table: several candidate models, combined as the table's own
history says works best, with intervals from the errors the combination made there.

Candidates, each forecast for every series (zero on steps the location is closed):
- `regression`: Hanzo's own (inventory/forecast.py), the only one that reads promotions and
  holidays ahead;
- `AutoETS`, `AutoTheta`, `MSTL`: statsforecast's (inventory/stat_models.py);
- `yoy`: the same step a year before, scaled by how the last `YOY_WINDOW` steps compare with
  the same steps a year before them.

Combinations (plain means: combining good models is usually stronger than picking one; M4 and
M5 showed it) are fixed in COMBINATIONS. The nightly job backtests each on the table's own
last windows of `horizon` steps (rolling origins inside the history: the future is never
looked at; three, or more for a short horizon) and keeps the one with the lowest mean MASE over the series; a history too
short for any such window gets DEFAULT. The 10-90% band is conformal: the quantiles of
log(1 + actual) - log(1 + forecast) that the chosen combination showed over those windows' open
steps (days that sold nothing included), pooled over the table's series.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .forecast import Forecast, Series, fit_forecast, seasonal_naive
from .stat_models import STAT_MODELS, available, stat_forecasts

# what the rolling-origin backtest (training/inventory/rolling.py) chose on its earlier origins
COMBINATIONS = (("regression",), ("MSTL", "yoy"), ("MSTL", "AutoETS", "yoy"))
DEFAULT = ("MSTL", "yoy")
FALLBACK = (("regression",), ("yoy",), ("regression", "yoy"))  # without statsforecast
INNER = 3  # backtest windows at least; more for a short horizon, so they cover INNER_STEPS
INNER_STEPS = {7: 26, 1: 56}  # half a year of weeks, eight weeks of days
MAX_INNER = 12
YOY_WINDOW = {7: 8, 1: 56}  # steps compared year on year: 8 weeks, or 8 weeks of days
LEVELS = (0.1, 0.9)


@dataclass
class Choice:
    """What the table's backtest chose, for the command and the report to say."""
    combination: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)  # combination -> mean inner MASE
    windows: int = 0  # inner windows the choice was made on
    log_band: tuple[float, float] = (np.nan, np.nan)  # conformal quantiles of log1p(actual) - log1p(forecast)
    statistical: bool = True  # statsforecast was there


def year_on_year(history: Series, horizon: int) -> np.ndarray:
    """The same step a year before, scaled by how the last YOY_WINDOW steps sold against the
    same steps a year before them (steps open in both years only). Where last year's step
    was closed, or the history is shorter than a year, the seasonal naive's value stands in:
    a store shut for a refit last summer is not forecast to sell nothing this summer."""
    step_days = history.step_days
    lag = 52 if step_days == 7 else 364
    window = YOY_WINDOW[7 if step_days == 7 else 1]
    units, open_ = history.units, history.open > 0
    fallback = seasonal_naive(history, horizon)
    n = len(units)
    if n < lag + window:
        return fallback
    source = n - lag + np.arange(horizon) % lag  # past a year, last year's season again
    recent = np.arange(n - window, n)
    both = open_[recent] & open_[recent - lag]
    before = units[recent - lag][both].sum()
    ratio = units[recent][both].sum() / before if before > 0 else 1.0
    return np.where(open_[source], units[source] * ratio, fallback)


def candidates(histories: dict[str, Series], futures: dict[str, Series], horizon: int,
               statistical: bool) -> dict[str, dict[str, np.ndarray]]:
    """Series -> candidate -> mean forecast over `futures`' steps."""
    stats = stat_forecasts(histories, horizon) if statistical else {}
    out = {}
    for key, history in histories.items():
        future = futures[key]
        closed = future.open <= 0
        regression = fit_forecast(history, future).mean
        naive = seasonal_naive(history, horizon)
        own = {"regression": regression, "seasonal_naive": naive, "yoy": year_on_year(history, horizon)}
        own.update({name: stats[name][key] for name in STAT_MODELS if name in stats})
        # a model that could not fit a series (too short for its season: NaN) gives way to the naive
        own = {name: np.where(np.isfinite(value), value, naive) for name, value in own.items()}
        out[key] = {name: np.where(closed, 0.0, np.maximum(value, 0.0)) for name, value in own.items()}
    return out


def combine(forecasts: dict[str, np.ndarray], combination: tuple[str, ...]) -> np.ndarray:
    return np.mean([forecasts[name] for name in combination], axis=0)


def _scale(units: np.ndarray, period: int) -> float:
    return float(np.mean(np.abs(units[period:] - units[:-period]))) if len(units) > period else np.nan


def windows_for(horizon: int, step_days: int) -> int:
    """Backtest windows for a horizon: INNER, or enough to cover INNER_STEPS (a band learnt on
    a few weeks of two-step forecasts says more about those weeks than about the next ones)."""
    return min(max(INNER, -(-INNER_STEPS[7 if step_days == 7 else 1] // horizon)), MAX_INNER)


def choose(histories: dict[str, Series], futures_for, horizon: int, inner: int | None = None,
           statistical: bool | None = None) -> Choice:
    """Backtest each combination on the last `inner` windows of the histories (None:
    windows_for the horizon); `futures_for` (series key, cut history, held-out steps) -> the
    future steps a forecast of that series may know (their flags)."""
    statistical = available() if statistical is None else statistical
    inner = inner if inner is not None else windows_for(horizon, next(iter(histories.values())).step_days)
    combinations = COMBINATIONS if statistical else FALLBACK
    first = next(iter(histories.values()))
    period, errors, ratios = first.period, {c: [] for c in combinations}, {c: [] for c in combinations}
    windows = 0
    for j in range(1, inner + 1):
        pasts, helds = {}, {}
        for key, s in histories.items():
            cut = len(s) - j * horizon
            if cut >= period + horizon + 4:
                pasts[key], helds[key] = s.take(slice(0, cut)), s.take(slice(cut, cut + horizon))
        if not pasts:
            continue
        windows += 1
        predicted = candidates(pasts, {k: futures_for(k, pasts[k], helds[k]) for k in pasts}, horizon, statistical)
        for key, forecasts in predicted.items():
            actual, scale = helds[key].units, _scale(pasts[key].units, period)
            for combination in combinations:
                mean = combine(forecasts, combination)
                if scale > 0:
                    errors[combination].append(float(np.mean(np.abs(actual - mean)) / scale))
                open_ = helds[key].open > 0  # a closed step is zero by rule, not by forecast
                ratios[combination] += list(np.log1p(actual[open_]) - np.log1p(mean[open_]))
    if not windows:
        return Choice(DEFAULT if statistical else FALLBACK[0], statistical=statistical)
    scores = {"+".join(c): float(np.mean(v)) if v else np.inf for c, v in errors.items()}
    best = min(combinations, key=lambda c: scores["+".join(c)])
    band = tuple(np.quantile(ratios[best], LEVELS)) if len(ratios[best]) >= 10 else (np.nan, np.nan)
    return Choice(best, scores, windows, band, statistical)


def forecast_table(histories: dict[str, Series], futures: dict[str, Series], horizon: int,
                   futures_for, inner: int | None = None, statistical: bool | None = None
                   ) -> tuple[dict[str, Forecast], Choice]:
    """Every series forecast over its `futures` steps by the combination its table's backtest
    chose, with conformal 10-90% bounds. The series share one step length. `statistical`
    False: Hanzo's own models only (None: statsforecast's too, where installed)."""
    choice = choose(histories, futures_for, horizon, inner, statistical)
    predicted = candidates(histories, futures, horizon, choice.statistical)
    return combined(predicted, choice, histories, futures), choice


def combined(predicted: dict[str, dict[str, np.ndarray]], choice: Choice, histories: dict[str, Series],
             futures: dict[str, Series]) -> dict[str, Forecast]:
    """The chosen combination of each series' candidates, with its conformal band (the
    regression's own residual band where the backtest had too few windows for one)."""
    out = {}
    low_log, high_log = choice.log_band
    for key, forecasts in predicted.items():
        mean = combine(forecasts, choice.combination)
        if np.isnan(low_log):
            own = fit_forecast(histories[key], futures[key])
            low, high = own.low, own.high
        else:
            low, high = np.expm1(np.log1p(mean) + low_log), np.expm1(np.log1p(mean) + high_log)
            closed = futures[key].open <= 0
            low, high = np.where(closed, 0.0, np.maximum(low, 0.0)), np.where(closed, 0.0, high)
        out[key] = Forecast(futures[key].dates, mean, np.minimum(low, mean), np.maximum(high, mean))
    return out
