"""A rolling-origin backtest of the forecasts, beside the standard statistical models.

Six origins (by default) spread over the last year of a sales table: at each, every series is
cut there, refitted on what came before and forecast `horizon` steps ahead (its promo,
holiday and open flags known, as planned promotions and closings are, or with
`--no-future-rows`, not known). Scored per series by MASE against the in-sample seasonal naive
scale, averaged over series, per origin and over all; the last two origins are the untouched
ones a choice made on the earlier origins is judged on.

Candidates: Hanzo's regression (server/inventory/forecast.py), seasonal naive, and
statsforecast's AutoTheta, AutoETS and MSTL (told that a closed day sells nothing: zero there).

    python -m hanzo.training.inventory.rolling --sales ../shared/data/walmart/sales.csv --horizon 13 \
        --out loadtest/reports/forecast-rolling-walmart.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hanzo.server.inventory.forecast import Series, fit_forecast, mase, seasonal_naive
from hanzo.server.inventory.sales import read_sales

STAT_MODELS = ("AutoTheta", "AutoETS", "MSTL")


def regular(series: Series) -> Series:
    """The series on every step from its first date to its last; a missing date is a closed
    step that sold nothing (a store shut for a refit)."""
    step = np.timedelta64(series.step_days, "D")
    dates = np.arange(series.dates[0], series.dates[-1] + step, step)
    if len(dates) == len(series):
        return series
    where = ((series.dates - dates[0]) // step).astype(np.int64)
    columns = [np.zeros(len(dates)) for _ in range(4)]
    for column, values in zip(columns, (series.units, series.promo, series.holiday, series.open)):
        column[where] = values
    return Series(dates, *columns)


def origins(length: int, horizon: int, count: int, span: int) -> list[int]:
    """`count` cut points (the first forecast step's index), evenly over the last `span` steps,
    the last one leaving exactly `horizon` steps to score."""
    last = length - horizon
    return [int(round(last - span + span * (i + 1) / count)) for i in range(count)]


def stat_forecasts(histories: dict[str, Series], horizon: int, period: int) -> dict[str, dict[str, np.ndarray]]:
    """statsforecast's models on every series at once: model -> series -> forecast."""
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS, AutoTheta

    frames = [pd.DataFrame({"unique_id": key, "ds": s.dates.astype("datetime64[ns]"), "y": s.units})
              for key, s in histories.items()]
    models = [AutoTheta(season_length=period), AutoETS(season_length=period),
              MSTL(season_length=period, trend_forecaster=AutoETS(model="ZZN"))]
    frame = pd.concat(frames, ignore_index=True)
    # weekly tables step on the weekday of their first date (Walmart's Fridays)
    freq = f"W-{pd.Timestamp(frame['ds'].iloc[0]).day_name()[:3].upper()}" if period == 52 else "D"
    engine = StatsForecast(models=models, freq=freq, n_jobs=1)
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in STAT_MODELS}
    predicted = engine.forecast(df=frame, h=horizon)
    for name in STAT_MODELS:
        for key, group in predicted.groupby("unique_id"):
            out[name][key] = np.maximum(group[name].to_numpy(np.float64), 0.0)
    return out


def run(sales: Path, horizon: int, count: int, future_rows: bool) -> dict:
    history, _ = read_sales(sales)
    series = {f"{loc}/{sku}": regular(s) for (loc, sku), s in sorted(history.items())}
    first = next(iter(series.values()))
    period = first.period
    span = 52 if period == 52 else 364
    length = min(len(s) for s in series.values())
    cuts = origins(length, horizon, count, span)
    per_origin = []
    for cut in cuts:
        started = time.perf_counter()
        pasts = {k: s.take(slice(0, len(s) - length + cut)) for k, s in series.items()}
        helds = {k: s.take(slice(len(s) - length + cut, len(s) - length + cut + horizon)) for k, s in series.items()}
        stats = stat_forecasts(pasts, horizon, period)
        scores: dict[str, dict[str, float]] = {}
        coverage = []
        for key in series:
            past, held = pasts[key], helds[key]
            future = held if future_rows else Series(held.dates, held.units * np.nan, held.promo * 0,
                                                     held.holiday * 0, held.open * 0 + 1)
            ours = fit_forecast(past, future)
            open_ = held.open > 0
            candidates = {"hanzo": ours.mean, "seasonal_naive": seasonal_naive(past, horizon)}
            candidates.update({name: stats[name][key] for name in STAT_MODELS})
            for name, forecast in candidates.items():
                forecast = np.where(open_, forecast, 0.0) if future_rows or name != "hanzo" else forecast
                scores.setdefault(name, {})[key] = mase(held.units, forecast, past.units, period)
            if open_.any():
                coverage.append(float(np.mean((held.units[open_] >= ours.low[open_])
                                              & (held.units[open_] <= ours.high[open_]))))
        per_origin.append({"first_forecast_date": str(next(iter(helds.values())).dates[0]),
                           "mase": {n: float(np.mean(list(v.values()))) for n, v in scores.items()},
                           "per_series": scores, "hanzo_10_90_coverage": float(np.mean(coverage)),
                           "seconds": round(time.perf_counter() - started, 2)})
    names = list(per_origin[0]["mase"])
    return {"sales": str(sales), "horizon": horizon, "future_rows": future_rows, "series": len(series),
            "origins": per_origin,
            "mase_all_origins": {n: float(np.mean([o["mase"][n] for o in per_origin])) for n in names},
            "mase_last_two": {n: float(np.mean([o["mase"][n] for o in per_origin[-2:]])) for n in names}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=Path, required=True)
    parser.add_argument("--horizon", type=int, required=True)
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--no-future-rows", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = run(args.sales, args.horizon, args.origins, not args.no_future_rows)
    summary = {k: v for k, v in report.items() if k != "origins"}
    summary["per_origin"] = [{k: v for k, v in o.items() if k != "per_series"} for o in report["origins"]]
    print(json.dumps(summary, indent=1))
    if args.out:
        from hanzo.loadtest.reports import write_report

        write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
