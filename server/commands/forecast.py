"""`hanzo forecast` and `hanzo plan-inventory`: demand forecasts with bounds for every series of
a sales table, and the nightly job's reorder points (and the plan PlanInventory answers from)."""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from .common import CommandError, add_command, existing_file, positive, stderr

SALES_HELP = ("date,location,sku,units,promo,holiday,open (rows with empty units: known future); or events "
              "(.jsonl[.gz]): daily units from their purchases")


def register(sub: argparse._SubParsersAction) -> None:
    forecast = add_command(sub, "forecast", "demand forecasts with 10-90%% bounds for every series of a sales table")
    forecast.add_argument("--sales", type=Path, required=True, help=SALES_HELP)
    forecast.add_argument("--horizon", type=int, required=True, help="steps ahead (days or weeks, as the table)")
    forecast.add_argument("--out", type=Path, required=True, help="CSV: date,location,sku,forecast,low,high")
    forecast.set_defaults(func=_forecast)

    plan = add_command(sub, "plan-inventory", "the nightly job: reorder points for every product and location")
    plan.add_argument("--sales", type=Path, required=True, help=SALES_HELP)
    plan.add_argument("--horizon", type=int, default=28, help="days forecast")
    plan.add_argument("--lead-time", type=int, default=7, help="days a replenishment takes")
    plan.add_argument("--service-level", type=float, default=0.95,
                      help="chance of no stockout while a replenishment is on its way")
    plan.add_argument("--out", type=Path, required=True, help="CSV of reorder points")
    plan.add_argument("--plan", type=Path, help="also write the plan the server's PlanInventory reads")
    plan.set_defaults(func=_plan_inventory)


def sales_table(path: Path, beside: Path) -> Path:
    """A sales table as given, or one made from an event log's purchases (written beside the
    output, so the run can be repeated from it)."""
    if not (path.name.endswith(".jsonl") or path.name.endswith(".jsonl.gz")):
        return path
    from ..features.formats import read_records
    from ..inventory.sales_from_events import write_sales_table

    table = Path(beside).with_suffix(".sales.csv")
    write_sales_table(read_records(path), table)
    return table


def _version() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _forecast(args: argparse.Namespace) -> int:
    import numpy as np

    from ..inventory.plan import forecast_sales

    existing_file("--sales", args.sales)
    positive("--horizon", args.horizon)
    table = forecast_sales(sales_table(args.sales, args.out), args.horizon)
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", "location", "sku", "forecast", "forecast_low", "forecast_high"])
        for (location, sku), forecast in zip(table.keys, table.forecasts):
            for d, mean, low, high in zip(np.datetime_as_string(forecast.dates, unit="D"), forecast.mean,
                                          forecast.low, forecast.high):
                writer.writerow([d, location, sku, f"{mean:.3f}", f"{low:.3f}", f"{high:.3f}"])
    say_choices(table)
    stderr(f"{len(table.keys)} series, {args.horizon} steps each -> {args.out}")
    return 0


def say_choices(table) -> None:
    """What the nightly job chose, and what it assumed where future rows were not given."""
    import numpy as np

    for step, choice in sorted(table.choices.items()):
        models = " + ".join(choice.combination)
        scored = [v for v in choice.scores.values() if np.isfinite(v)]
        how = (f"the best of {len(choice.scores)} combinations over the last {choice.windows} windows" if scored
               else "nothing to score the combinations on: the default" if choice.windows
               else "history too short to backtest: the default")
        stderr(f"{'weekly' if step == 7 else 'daily' if step == 1 else f'{step}-day'} series: {models} ({how})"
               + ("" if choice.statistical else "; statsforecast is not installed: no statistical models"))
    by_text: dict[str, list[str]] = {}
    for (location, sku), text in table.assumed.items():
        by_text.setdefault(text, []).append(f"{location}/{sku}")
    for text, names in sorted(by_text.items(), key=lambda item: -len(item[1])):
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        stderr(f"future rows missing (all or some) for {shown}: assumed {text}")


def _plan_inventory(args: argparse.Namespace) -> int:
    from ..inventory.plan import build_plan, forecast_sales, with_totals
    from ..inventory.policy import daily, reorder_point

    existing_file("--sales", args.sales)
    positive("--horizon", args.horizon)
    positive("--lead-time", args.lead_time)
    if not 0.5 <= args.service_level < 1.0:
        raise CommandError(f"--service-level must be in [0.5, 1), not {args.service_level:g}")
    # a weekly table plans in weeks: enough of them to cover the horizon and the lead time in days
    horizon = max(args.horizon, args.lead_time)
    table = forecast_sales(sales_table(args.sales, args.out), horizon)
    say_choices(table)
    plan = with_totals(build_plan(args.sales, horizon, _version(), table))
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["location", "product_id", "step_days", "lead_time_demand", "safety_stock", "reorder_point"])
        for row, (location, product_id) in enumerate(plan.keys):
            step = int(plan.step_days[row])
            point = reorder_point(*daily(plan.mean[row], plan.low[row], plan.high[row], step), args.lead_time,
                                  args.service_level)
            writer.writerow([location, product_id, step, f"{point.lead_time_demand:.3f}", f"{point.safety_stock:.3f}",
                             f"{point.reorder_point:.3f}"])
    if args.plan:
        plan.save(args.plan)
    stderr(f"{len(plan.keys)} series: reorder points -> {args.out}" + (f", plan -> {args.plan}" if args.plan else ""))
    return 0
