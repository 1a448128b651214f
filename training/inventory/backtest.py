"""Forecast accuracy on a sales table: the last `holdout` steps of every series held out,
forecast from the steps before them (their promo, holiday and open flags known, as planned
promotions and closings are), scored by MASE and WAPE beside the seasonal naive forecast of
the same windows.

    python -m hanzo.training.inventory.backtest --sales ../shared/data/walmart/sales.csv --holdout 13
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hanzo.server.inventory.forecast import Series, fit_forecast, mase, seasonal_naive, wape
from hanzo.server.inventory.policy import step_sigma
from hanzo.server.inventory.reconcile import Hierarchy, bottom_up, reconcile
from hanzo.server.inventory.sales import read_sales


def backtest(sales: Path, holdout: int) -> dict:
    history, _ = read_sales(sales)
    ours, naive, ours_w, naive_w, covered = [], [], [], [], []
    actual_all, ours_all, naive_all = [], [], []
    for key, series in sorted(history.items()):
        if len(series) <= holdout + series.period:
            continue
        past, held = series.take(slice(0, len(series) - holdout)), series.take(slice(len(series) - holdout, None))
        forecast = fit_forecast(past, held)
        baseline = np.where(held.open > 0, seasonal_naive(past, holdout), 0.0)
        ours.append(mase(held.units, forecast.mean, past.units, past.period))
        naive.append(mase(held.units, baseline, past.units, past.period))
        ours_w.append(wape(held.units, forecast.mean))
        naive_w.append(wape(held.units, baseline))
        open_ = held.open > 0
        covered.append(np.mean((held.units[open_] >= forecast.low[open_]) & (held.units[open_] <= forecast.high[open_]))
                       if open_.any() else np.nan)
        actual_all.append(held.units)
        ours_all.append(forecast.mean)
        naive_all.append(baseline)
    actual, mine, base = (np.concatenate(v) for v in (actual_all, ours_all, naive_all))
    return {"sales": str(sales), "holdout_steps": holdout, "series": len(ours),
            "mase": {"model": float(np.mean(ours)), "seasonal_naive": float(np.mean(naive)),
                     "ratio": float(np.mean(ours) / np.mean(naive))},
            "wape": {"model": wape(actual, mine), "seasonal_naive": wape(actual, base)},
            "wape_mean_per_series": {"model": float(np.mean(ours_w)), "seasonal_naive": float(np.mean(naive_w))},
            "interval_10_90_coverage": float(np.nanmean(covered))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=Path, required=True)
    parser.add_argument("--holdout", type=int, required=True, help="steps held out at the end of every series")
    parser.add_argument("--levels", action="store_true",
                        help="also forecast the locations' total and reconcile (bottom-up, OLS, WLS)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = backtest(args.sales, args.holdout)
    if args.levels:
        report["levels"] = reconciled_backtest(args.sales, args.holdout)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        from hanzo.loadtest.reports import write_report

        write_report(args.out, report)
    return 0



def reconciled_backtest(sales: Path, holdout: int) -> dict:
    """The locations and their total as a two-level hierarchy: every series forecast on its own
    (the total from the summed sales), then made to add up by bottom-up and by WLS
    reconciliation; MASE at the top and on average at the bottom, for each."""
    history, _ = read_sales(sales)
    series = _aligned({f"{location}/{sku}": s for (location, sku), s in history.items()})
    first = next(iter(series.values()))
    total_units = np.sum([s.units for s in series.values()], axis=0)
    any_open = np.max([s.open for s in series.values()], axis=0)
    series["TOTAL"] = Series(first.dates, total_units, np.max([s.promo for s in series.values()], axis=0),
                             np.max([s.holiday for s in series.values()], axis=0), any_open)
    hierarchy = Hierarchy.from_parents({name: (None if name == "TOTAL" else "TOTAL") for name in series})
    base, variance, actual, past_units = [], [], [], []
    for name in hierarchy.names:
        s = series[name]
        past, held = s.take(slice(0, len(s) - holdout)), s.take(slice(len(s) - holdout, None))
        forecast = fit_forecast(past, held)
        base.append(forecast.mean)
        variance.append(float(np.mean(step_sigma(forecast.low, forecast.high) ** 2)))
        actual.append(held.units)
        past_units.append(past.units)
    base, actual = np.array(base), np.array(actual)
    period = first.period
    methods = {"base": base, "bottom_up": bottom_up(hierarchy, base),
               "wls": reconcile(hierarchy, base, np.array(variance)), "ols": reconcile(hierarchy, base)}
    top = hierarchy.names.index("TOTAL")
    out = {"sales": str(sales), "holdout_steps": holdout, "bottom_series": len(hierarchy.bottom)}
    for name, forecast in methods.items():
        scores = [mase(actual[i], forecast[i], past_units[i], period) for i in range(len(hierarchy.names))]
        out[name] = {"total_mase": scores[top],
                     "bottom_mase": float(np.mean([v for i, v in enumerate(scores) if i != top])),
                     "adds_up": bool(np.allclose(forecast[top], forecast[[i for i in range(len(forecast))
                                                                          if i != top]].sum(axis=0), rtol=1e-6))}
    return out


def _aligned(series: dict) -> dict:
    """Every series on the same dates (the union of theirs, at their common step); a date a
    series lacks is a closed day that sold nothing (a store shut for a refit)."""
    step = np.timedelta64(next(iter(series.values())).step_days, "D")
    start = min(s.dates[0] for s in series.values())
    end = max(s.dates[-1] for s in series.values())
    dates = np.arange(start, end + step, step)
    out = {}
    for name, s in series.items():
        where = ((s.dates - start) // step).astype(np.int64)
        columns = [np.zeros(len(dates)) for _ in range(4)]
        for column, values in zip(columns, (s.units, s.promo, s.holiday, s.open)):
            column[where] = values
        out[name] = Series(dates, *columns)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
