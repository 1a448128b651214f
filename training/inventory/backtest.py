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

from hanzo.server.inventory.forecast import fit_forecast, mase, seasonal_naive, wape
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
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = backtest(args.sales, args.holdout)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
