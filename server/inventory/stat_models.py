"""The standard statistical forecasters, from statsforecast (Nixtla): AutoETS, AutoTheta and
MSTL, fitted on every series of a table at once. They are candidates beside Hanzo's regression
(inventory/ensemble.py), never hand-written here.

statsforecast comes with the `train` extra (it brings pandas); without it there are no
statistical candidates, and `available()` says so."""
from __future__ import annotations

import warnings

import numpy as np

from .forecast import Series

STAT_MODELS = ("AutoETS", "AutoTheta", "MSTL")


def available() -> bool:
    try:
        import statsforecast  # noqa: F401
    except ImportError:
        return False
    return True


def stat_forecasts(histories: dict[str, Series], horizon: int) -> dict[str, dict[str, np.ndarray]]:
    """Model -> series -> `horizon` steps ahead, not below zero. The series share one step
    (daily, or weekly on one weekday); each needs at least two steps."""
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS, AutoTheta, SeasonalNaive

    first = next(iter(histories.values()))
    period = first.period
    frame = pd.concat([pd.DataFrame({"unique_id": key, "ds": s.dates.astype("datetime64[ns]"), "y": s.units})
                       for key, s in histories.items()], ignore_index=True)
    # a weekly table steps on the weekday of its dates (Walmart's Fridays)
    freq = f"W-{pd.Timestamp(first.dates[0]).day_name()[:3].upper()}" if first.step_days == 7 else "D"
    models = [AutoETS(season_length=period), AutoTheta(season_length=period),
              MSTL(season_length=period, trend_forecaster=AutoETS(model="ZZN"))]
    # a model that cannot fit a series (too short for its season) answers with the seasonal naive
    engine = StatsForecast(models=models, freq=freq, n_jobs=1, fallback_model=SeasonalNaive(season_length=period))
    with warnings.catch_warnings():  # its notes on short series go to the fallback, said by the caller
        warnings.simplefilter("ignore")
        predicted = engine.forecast(df=frame, h=horizon)
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in STAT_MODELS}
    for key, group in predicted.groupby("unique_id"):
        for name in STAT_MODELS:
            out[name][str(key)] = np.maximum(group[name].to_numpy(np.float64), 0.0)
    return out
