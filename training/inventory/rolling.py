"""A rolling-origin backtest of the nightly forecast, beside the standard statistical models.

Six origins (by default) spread over the last year of a sales table. At each, every series is
cut there and the nightly job (server/inventory/ensemble.py) runs on what came before it
alone: it backtests its combinations on windows inside that history, picks one, and forecasts
`horizon` steps ahead, with the series' promo, holiday and open flags known (as planned
promotions and closings are) or, with `--no-future-rows`, the calendar inferred from the
history. Scored per series by MASE against the in-sample seasonal naive scale, averaged over
series, per origin, over all origins and over the last two. The design (the candidates, the
combinations, the band) was chosen on the first four origins; the last two were not looked at.

Beside it, on the same cuts: seasonal naive, statsforecast's AutoTheta, AutoETS and MSTL, and
Hanzo's regression alone; the baselines are told which days were closed (zero there).

    python -m hanzo.training.inventory.rolling --sales ../shared/data/walmart/sales.csv --horizon 13 \\
        --out loadtest/reports/forecast-rolling-walmart.json
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hanzo.server.inventory.calendar import infer_future
from hanzo.server.inventory.ensemble import candidates, choose, combined
from hanzo.server.inventory.forecast import Series, mase
from hanzo.server.inventory.sales import read_sales, regular_steps

BASELINES = ("seasonal_naive", "AutoTheta", "AutoETS", "MSTL", "regression")


def origins(length: int, horizon: int, count: int, span: int) -> list[int]:
    """`count` cut points (the first forecast step's index), evenly over the last `span` steps,
    the last one leaving exactly `horizon` steps to score."""
    last = length - horizon
    return [int(round(last - span + span * (i + 1) / count)) for i in range(count)]


def _known(key: str, past: Series, held: Series) -> Series:
    return held


def _inferred(key: str, past: Series, held: Series) -> Series:
    return infer_future(past, held.dates)[0]


def one_origin(series: dict[str, Series], cut_from_end: int, horizon: int, future_rows: bool) -> dict:
    started = time.perf_counter()
    pasts = {k: s.take(slice(0, len(s) - cut_from_end)) for k, s in series.items()}
    helds = {k: s.take(slice(len(s) - cut_from_end, len(s) - cut_from_end + horizon)) for k, s in series.items()}
    flags = _known if future_rows else _inferred
    futures = {k: flags(k, pasts[k], helds[k]) for k in series}
    choice = choose(pasts, flags, horizon)
    predicted = candidates(pasts, futures, horizon, choice.statistical)
    ours = combined(predicted, choice, pasts, futures)
    period = next(iter(series.values())).period
    scores: dict[str, list[float]] = {name: [] for name in ("hanzo",) + BASELINES}
    # without future rows, the baselines as they are (told the closings) and on Hanzo's calendar
    same: dict[str, list[float]] = {name: [] for name in BASELINES}
    covered = []
    for key, held in helds.items():
        past, open_ = pasts[key], held.open > 0
        scores["hanzo"].append(mase(held.units, ours[key].mean, past.units, period))
        for name in BASELINES:
            scores[name].append(mase(held.units, np.where(open_, predicted[key][name], 0.0), past.units, period))
            same[name].append(mase(held.units, predicted[key][name], past.units, period))
        sold = open_ & (held.units > 0)
        if sold.any():
            covered.append(float(np.mean((held.units[sold] >= ours[key].low[sold])
                                         & (held.units[sold] <= ours[key].high[sold]))))
    return {"first_forecast_date": str(next(iter(helds.values())).dates[0]), "chosen": "+".join(choice.combination),
            "backtest_windows": choice.windows, "mase": {n: float(np.mean(v)) for n, v in scores.items()},
            **({} if future_rows else {"mase_baselines_on_the_inferred_calendar": {
                n: float(np.mean(v)) for n, v in same.items()}}),
            "interval_10_90_coverage": float(np.mean(covered)), "seconds": round(time.perf_counter() - started, 1)}


def run(sales: Path, horizon: int, count: int, future_rows: bool) -> dict:
    history, _ = read_sales(sales)
    series = {f"{loc}/{sku}": regular_steps(s) for (loc, sku), s in sorted(history.items())}
    period = next(iter(series.values())).period
    length = min(len(s) for s in series.values())
    cuts = origins(length, horizon, count, 52 if period == 52 else 364)
    per_origin = [one_origin(series, length - cut, horizon, future_rows) for cut in cuts]
    names = list(per_origin[0]["mase"])

    def mean_over(rows: list[dict], name: str) -> float:
        return float(np.mean([o["mase"][name] for o in rows]))

    best_stat = min(("AutoTheta", "AutoETS", "MSTL"), key=lambda n: mean_over(per_origin, n))
    return {"sales": str(sales), "horizon": horizon, "future_rows": future_rows, "series": len(series),
            "origins": per_origin,
            "mase_all_origins": {n: mean_over(per_origin, n) for n in names},
            "mase_last_two": {n: mean_over(per_origin[-2:], n) for n in names},
            "best_statistical_model": best_stat,
            "vs_best_statistical": mean_over(per_origin, "hanzo") / mean_over(per_origin, best_stat) - 1,
            "vs_best_statistical_last_two": mean_over(per_origin[-2:], "hanzo") / mean_over(per_origin[-2:],
                                                                                            best_stat) - 1,
            "origins_under_seasonal_naive": sum(o["mase"]["hanzo"] < o["mase"]["seasonal_naive"] for o in per_origin),
            "interval_coverage_mean": float(np.mean([o["interval_10_90_coverage"] for o in per_origin])),
            **({} if future_rows else {"baselines_on_the_inferred_calendar_all_origins": {
                n: float(np.mean([o["mase_baselines_on_the_inferred_calendar"][n] for o in per_origin]))
                for n in BASELINES}})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=Path, required=True)
    parser.add_argument("--horizon", type=int, required=True)
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--no-future-rows", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = run(args.sales, args.horizon, args.origins, not args.no_future_rows)
    from hanzo.loadtest.reports import print_report

    print_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
