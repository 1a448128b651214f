"""Pricing in a closed loop on the simulator: a shop runs `train_days` with price experiments,
the demand model is fitted on that log, then the same shop (the simulation copied at that day,
random state and all) runs `eval_days` under each pricing policy:

- status quo: the catalogue's prices held;
- cost-plus: cost x (1 + markup) for every product, at the catalogue's median markup and at
  others around it (the best of them, chosen after the fact, is the strongest baseline);
- the model: QuotePrice's own code (server/pricing/quote.py) every morning for every product,
  with its rules (margin floor, at most max_change a day), from stock on hand, refitted every
  `refit_days` on the log so far (recent days weighted more: `half_life_days`).

Profit is (price - cost) x units over the evaluation days' purchases; also revenue, units and
the share of carted units lost to stockouts.

    python -m hanzo.training.pricing.replay --users 4000 --products 300 --train-days 90 \\
        --eval-days 30 --seed 5 --out loadtest/reports/pricing-replay-sim.json
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np

from hanzo.server.pricing.demand_model import DemandModel
from hanzo.server.pricing.optimize import PriceRules
from hanzo.server.pricing.quote import ProductNow, quote
from hanzo.training.simulator import SimulationConfig
from hanzo.training.simulator.world import DAY_MS, Simulation

from .demand import daily_panel, fit_demand


def _fit(sim: Simulation, pooling: float, half_life_days: float = 0.0) -> DemandModel:
    events = sorted(sim.events, key=lambda e: e["timestamp"])
    starting = [sim.catalog.record(i, sim.catalog.base_price[i], 0.0) for i in range(len(sim.catalog))]
    return fit_demand(daily_panel(events, starting), pooling, half_life_days=half_life_days)


class ModelPolicy:
    """Every morning, each product priced by the server's quote from the model and its stock."""

    def __init__(self, sim: Simulation, model: DemandModel, rules: PriceRules, restock_days: float,
                 refit_days: int, pooling: float, extrapolation: float, half_life_days: float) -> None:
        self.sim, self.model, self.rules, self.extrapolation = sim, model, rules, extrapolation
        self.half_life_days = half_life_days
        self.restock_days, self.refit_days, self.pooling = restock_days, refit_days, pooling
        self.group = [c[0] for c in sim.catalog.categories]
        self.started: int | None = None
        self.quoted = 0
        self.pooled = 0
        self.active: dict[str, int] = {}

    def __call__(self, day: int, market) -> np.ndarray:
        if self.started is None:
            self.started = day
        elif self.refit_days and (day - self.started) % self.refit_days == 0:
            self.model = _fit(self.sim, self.pooling, self.half_life_days)
        catalog = self.sim.catalog
        stock = sum(market.stock.values())
        prices = market.price.copy()
        launched = catalog.launch_day <= day
        weekday = int((np.datetime64(self.sim.config.start) + day).astype("datetime64[D]").view("int64") + 3) % 7
        for i in np.flatnonzero(launched):
            now = ProductNow(catalog.ids[i], self.group[i], float(catalog.cost[i]), float(market.price[i]),
                             float(stock[i]))
            try:
                answer = quote(self.model, now, weekday, [], self.rules, self.restock_days, self.extrapolation)
            except Exception:  # no curve for it or its category: left as it is
                continue
            prices[i] = answer.choice.price
            self.quoted += 1
            self.pooled += answer.pooled
            for name in answer.choice.active + answer.choice.drivers:
                self.active[name] = self.active.get(name, 0) + 1
        return prices


def _outcome(sim: Simulation, first_day: int) -> dict:
    """Profit, revenue, units from the purchases on and after `first_day`; carted units that
    did not sell because the product was out of stock."""
    since = sim.start_ms + first_day * DAY_MS
    cost = dict(zip(sim.catalog.ids, sim.catalog.cost))
    profit = revenue = units = 0.0
    carted: dict[str, dict[str, float]] = {}
    lost = 0.0
    for e in sim.events:
        if e["timestamp"] < since:
            continue
        kind, payload = e["event_type"], e["payload"]
        if kind == "purchase":
            q = float(payload["quantity"])
            profit += (payload["price"] - float(cost[payload["product_id"]])) * q
            revenue += payload["price"] * q
            units += q
        elif kind == "add_to_cart":
            carted.setdefault(e["session_id"], {})[payload["product_id"]] = float(payload["quantity"])
        elif kind == "order":
            bought = {line["product_id"] for line in payload.get("items") or ()}
            lost += sum(q for p, q in carted.pop(e["session_id"], {}).items() if p not in bought)
    return {"profit": round(profit, 2), "revenue": round(revenue, 2), "units": units,
            "units_lost_to_stockouts": lost, "stockout_share": round(lost / max(lost + units, 1.0), 4)}


def _run(base: Simulation, policy, first_day: int, days: int) -> Simulation:
    sim = copy.deepcopy(base)
    if isinstance(policy, ModelPolicy):
        policy.sim = sim
    sim.market.policy = policy
    for day in range(first_day, first_day + days):
        sim._day(day)
    return sim


def replay(config: SimulationConfig, train_days: int, eval_days: int, markups: list[float], rules: PriceRules,
           restock_days: float = 7.0, refit_days: int = 3, pooling: float = 5.0, extrapolation: float = 0.5,
           half_life_days: float = 21.0, only: list[str] | None = None, log=print) -> dict:
    started = time.monotonic()
    config.days = train_days + eval_days
    base = Simulation(config)
    for day in range(train_days):
        base._day(day)
    log(f"trained shop: {train_days} days, {len(base.events)} events ({time.monotonic() - started:.0f} s)")
    model = _fit(base, pooling, half_life_days)
    log(f"demand model: {len(model)} products, median elasticity {np.median(model.b1):.2f}")
    catalog = base.catalog
    median_markup = float(np.median(catalog.base_price / catalog.cost - 1))
    policies = {"status_quo": lambda day, market: catalog.base_price}
    for markup in sorted(set([round(median_markup, 2)] + markups)):
        policies[f"cost_plus_{markup:.2f}"] = (lambda m: lambda day, market: catalog.cost * (1 + m))(markup)
    policies["model"] = ModelPolicy(base, model, rules, restock_days, refit_days, pooling, extrapolation,
                                    half_life_days)
    if only:
        policies = {k: v for k, v in policies.items() if k in only}
    results = {}
    for name, policy in policies.items():
        sim = _run(base, policy, train_days, eval_days)
        results[name] = _outcome(sim, train_days)
        results[name]["mean_price_over_base"] = round(float(np.exp(np.mean(np.log(sim.market.price /
                                                                                   catalog.base_price)))), 4)
        log(f"{name}: {results[name]} ({time.monotonic() - started:.0f} s)")
    report = {
        "config": {**vars(config), "train_days": train_days, "eval_days": eval_days, "restock_days": restock_days,
                   "refit_days": refit_days, "pooling": pooling, "extrapolation": extrapolation,
                   "half_life_days": half_life_days, "rules": vars(rules)},
        "median_markup": round(median_markup, 4), "results": results,
    }
    if "model" in results:
        model_profit = results["model"]["profit"]
        cost_plus = {k: v for k, v in results.items() if k.startswith("cost_plus_")}
        usual = f"cost_plus_{round(median_markup, 2):.2f}"
        if usual in results:
            report["model_vs_cost_plus_median_markup"] = round(model_profit / results[usual]["profit"] - 1, 4)
        if cost_plus:
            best = max(cost_plus, key=lambda k: cost_plus[k]["profit"])
            report["model_vs_best_cost_plus"] = {"policy": best,
                                                 "lift": round(model_profit / cost_plus[best]["profit"] - 1, 4)}
        if "status_quo" in results:
            report["model_vs_status_quo"] = round(model_profit / results["status_quo"]["profit"] - 1, 4)
        policy = policies["model"]
        report["model_quotes"] = {"quotes": policy.quoted, "pooled_share": round(policy.pooled / max(policy.quoted, 1),
                                                                                 4),
                                  "drivers_and_constraints": policy.active}
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--train-days", type=int, default=90)
    parser.add_argument("--eval-days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--price-experiments", type=float, default=0.10,
                        help="chance a day a product starts a price test during the training days")
    parser.add_argument("--markups", default="0.3,0.5,0.9,1.2,1.5", help="cost-plus markups beside the median one")
    parser.add_argument("--min-margin", type=float, default=0.10)
    parser.add_argument("--max-change", type=float, default=0.15)
    parser.add_argument("--restock-days", type=float, default=7.0)
    parser.add_argument("--refit-days", type=int, default=3, help="refit the model every N days (0: never)")
    parser.add_argument("--extrapolation", type=float, default=0.5,
                        help="how far past the prices it was fitted on the model's target may go")
    parser.add_argument("--half-life-days", type=float, default=21.0,
                        help="weight of a day in the fit halves every N days back (0: all days alike)")
    parser.add_argument("--policies", default="", help="run only these (comma-separated names; default all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    config = SimulationConfig(seed=args.seed, users=args.users, products=args.products,
                              price_experiment_rate=args.price_experiments)
    report = replay(config, args.train_days, args.eval_days, [float(m) for m in args.markups.split(",") if m],
                    PriceRules(args.min_margin, args.max_change), args.restock_days, args.refit_days,
                    extrapolation=args.extrapolation, half_life_days=args.half_life_days,
                    only=[p for p in args.policies.split(",") if p] or None)
    text = json.dumps(report, indent=1, default=lambda x: x if not isinstance(x, float) or math.isfinite(x) else None)
    print(text)
    if args.out:
        from hanzo.loadtest.reports import write_report

        write_report(args.out, json.loads(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
