"""Replenishment replayed on real demand: over the held-out steps of every series, each step
the stock on hand meets that step's demand (what it cannot meet is a stockout), then an order
is placed that arrives `lead_time` steps later. Two policies, from the same opening stock:

- forecast: order up to the reorder point over lead time + one review step, from the nightly
  job's forecast (hanzo.server.inventory.ensemble: its combination chosen on the history before
  the held-out steps, its models refitted each step on everything known so far), for a service
  level;
- naive: the next steps sell what the last one did (the common shop rule): order up to lead
  time + one review step of the last step's sales, plus a safety cover of `k` steps of it.

Each policy's safety setting is swept (service level 0.5-0.995; cover 0-10 steps), tracing
stockout rate (share of open steps with demand unmet) against inventory turnover (units sold
over the average stock held). They are compared at the same service: at the forecast policy's
target service level, the naive policy's turnover at the same stockout rate, and its stockout
rate at the same turnover (both interpolated along its curve).

    python -m hanzo.training.inventory.replay --sales ../shared/data/rossmann/sales.csv --holdout 42 --lead-time 3
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from hanzo.server.inventory.ensemble import Choice, candidates, choose, combined
from hanzo.server.inventory.forecast import Series
from hanzo.server.inventory.policy import step_sigma
from hanzo.server.inventory.sales import future_steps, read_sales, regular_steps

SERVICE_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995)
COVERS = tuple(np.round(np.arange(0.0, 10.0001, 0.1), 2))


@dataclass
class Outcome:
    demand: float = 0.0
    sold: float = 0.0
    stockout_steps: int = 0
    open_steps: int = 0
    stock_sum: float = 0.0  # stock on hand after each step, summed over steps and series
    steps: int = 0  # held-out steps (per series, the same for all)

    def add(self, other: "Outcome") -> None:
        self.demand += other.demand
        self.sold += other.sold
        self.stockout_steps += other.stockout_steps
        self.open_steps += other.open_steps
        self.stock_sum += other.stock_sum
        self.steps = other.steps

    @property
    def stockout_rate(self) -> float:
        return self.stockout_steps / max(self.open_steps, 1)

    @property
    def turnover(self) -> float:
        """Units sold over the held-out steps against the stock held on average."""
        average = self.stock_sum / max(self.steps, 1)
        return self.sold / average if average > 0 else float("inf")

    def report(self) -> dict:
        return {"stockout_rate": self.stockout_rate, "fill_rate": self.sold / self.demand if self.demand else 1.0,
                "turnover": self.turnover, "average_stock": self.stock_sum / max(self.steps, 1)}


def _simulate(demand: np.ndarray, open_: np.ndarray, opening: float, lead_time: int, order_up_to) -> Outcome:
    """order_up_to(t, sold) -> the level the stock position is brought to at the end of step t.
    An order placed then is on the shelf for step t + 1 + lead_time, so the stock position
    must cover the lead time and the next review step."""
    on_hand, pipeline = opening, [0.0] * (lead_time + 1)
    out = Outcome(steps=len(demand))
    for t in range(len(demand)):
        on_hand += pipeline.pop(0)
        sold = min(on_hand, demand[t])
        on_hand -= sold
        out.demand += demand[t]
        out.sold += sold
        if open_[t] > 0:
            out.open_steps += 1
            out.stockout_steps += int(demand[t] > sold + 1e-9)
        out.stock_sum += on_hand
        pipeline.append(max(order_up_to(t, sold) - on_hand - sum(pipeline), 0.0))
    return out


def lead_time_forecasts(table: dict[str, Series], holdout: int, lead_time: int, statistical: bool | None = None
                        ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], Choice]:
    """For the opening and after each held-out step t, per series: demand over lead time + one
    review step (mean) and its spread (sigma), forecast by the nightly job from the steps known
    then (the future's flags known). Its combination is chosen once, on the history before the
    held-out steps, as the nightly job chooses; every step refits the models."""
    steps = lead_time + 1
    out = {key: (np.zeros(holdout + 1), np.zeros(holdout + 1)) for key in table}
    first = {key: s.take(slice(0, len(s) - holdout)) for key, s in table.items()}
    choice = choose(first, lambda key, past, held: held, steps, statistical=statistical)
    for t in range(holdout + 1):
        knowns = {key: s.take(slice(0, len(s) - holdout + t)) for key, s in table.items()}
        aheads = {key: future_steps(knowns[key], steps, s.take(slice(len(s) - holdout + t, None)))[0]
                  for key, s in table.items()}
        forecasts = combined(candidates(knowns, aheads, steps, choice.statistical), choice, knowns, aheads)
        for key, forecast in forecasts.items():
            out[key][0][t] = forecast.mean.sum()
            out[key][1][t] = np.sqrt(np.sum(step_sigma(forecast.low, forecast.high) ** 2))
    return out, choice


def replay(sales: Path, holdout: int, lead_time: int, service_level: float = 0.95,
           statistical: bool | None = None) -> dict:
    history, _ = read_sales(sales)
    table = {f"{loc}/{sku}": regular_steps(s) for (loc, sku), s in sorted(history.items())
             if len(s) > holdout + 2 * s.period}
    forecasts, choice = lead_time_forecasts(table, holdout, lead_time, statistical) if table else ({}, None)
    runs = [(table[key], *forecasts[key]) for key in table]

    def forecast_policy(level: float) -> Outcome:
        z, total = NormalDist().inv_cdf(level), Outcome()
        target = NormalDist().inv_cdf(service_level)
        for series, mu, sigma in runs:
            start = len(series) - holdout
            # both policies open with the stock the forecast policy holds at its target level
            opening = mu[0] + target * sigma[0]
            total.add(_simulate(series.units[start:], series.open[start:], opening, lead_time,
                                lambda t, sold: mu[t + 1] + z * sigma[t + 1]))
        return total

    def naive_policy(cover: float) -> Outcome:
        total = Outcome()
        target = NormalDist().inv_cdf(service_level)
        for series, mu, sigma in runs:
            start = len(series) - holdout
            total.add(_simulate(series.units[start:], series.open[start:], mu[0] + target * sigma[0], lead_time,
                                lambda t, sold: sold * (lead_time + 1 + cover)))
        return total

    ours_curve = {level: forecast_policy(level) for level in SERVICE_LEVELS}
    naive_curve = {cover: naive_policy(cover) for cover in COVERS}
    ours = ours_curve[service_level] if service_level in ours_curve else forecast_policy(service_level)
    # the naive curve, ordered by stockout rate falling as cover grows (turnover falls with it)
    n_stockout = np.array([naive_curve[c].stockout_rate for c in COVERS])
    n_turnover = np.array([naive_curve[c].turnover for c in COVERS])
    order = np.argsort(n_stockout)
    turnover_at_same_stockouts = float(np.interp(ours.stockout_rate, n_stockout[order], n_turnover[order]))
    order = np.argsort(n_turnover)
    stockouts_at_same_turnover = float(np.interp(ours.turnover, n_turnover[order], n_stockout[order]))
    # past the naive policy's leanest turnover np.interp would clamp to it: then the fair
    # comparison runs the other way, the forecast policy at the naive one's leanest turnover
    leanest = int(np.argmax(n_turnover))
    o_turnover = np.array([v.turnover for v in ours_curve.values()])
    o_stockout = np.array([v.stockout_rate for v in ours_curve.values()])
    o_order = np.argsort(o_turnover)
    ours_at_leanest = float(np.interp(n_turnover[leanest], o_turnover[o_order], o_stockout[o_order]))
    beyond = bool(ours.turnover > n_turnover[leanest])
    return {"sales": str(sales), "series": len(runs), "holdout_steps": holdout, "lead_time_steps": lead_time,
            "forecast": "+".join(choice.combination) if choice else None,
            "service_level": service_level, "forecast_policy": ours.report(),
            "naive_at_same_stockout_rate": {"turnover": turnover_at_same_stockouts},
            "naive_at_same_turnover": {"stockout_rate": stockouts_at_same_turnover},
            "turnover_change": ours.turnover / turnover_at_same_stockouts - 1,
            "stockout_change": ours.stockout_rate / stockouts_at_same_turnover - 1
            if stockouts_at_same_turnover > 0 else None,
            "beyond_naive_turnover": beyond,
            "at_naive_leanest_turnover": {"turnover": float(n_turnover[leanest]),
                                          "naive_stockout_rate": float(n_stockout[leanest]),
                                          "forecast_stockout_rate": ours_at_leanest,
                                          "stockout_change": ours_at_leanest / n_stockout[leanest] - 1
                                          if n_stockout[leanest] > 0 else None},
            "naive_without_cover": naive_curve[0.0].report(),
            "curves": {"forecast": {str(k): v.report() for k, v in ours_curve.items()},
                       "naive": {str(k): v.report() for k, v in naive_curve.items() if k in (0.0, 0.5, 1.0, 2.0, 4.0,
                                                                                              8.0)}}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=Path, required=True)
    parser.add_argument("--holdout", type=int, required=True)
    parser.add_argument("--lead-time", type=int, required=True, help="steps (days or weeks) an order takes")
    parser.add_argument("--service-level", type=float, default=0.95)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = replay(args.sales, args.holdout, args.lead_time, args.service_level)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        from hanzo.loadtest.reports import write_report

        write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
