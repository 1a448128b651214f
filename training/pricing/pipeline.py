"""`hanzo train pricing`: the demand model from an event log (prices from catalog_update and
price_change events, units from purchases, traffic from product views), checked on the last
days it was not fitted on, and against a simulation's true elasticities when given."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from hanzo.server.features.formats import read_catalog, read_records
from hanzo.server.pricing.demand_model import DEMAND_FILE, DemandModel

from ..repository_writer import write_file_version

from .demand import ProductDays, daily_panel, fit_demand


def _predicted(model: DemandModel, item: ProductDays, row: int) -> np.ndarray:
    """Units a day the model expects on the item's days, at each day's price and traffic."""
    return model.expected_units(row, item.price, item.weekday) * (item.views / max(model.views_per_day[row], 1e-9))


def holdout_check(panel: list[ProductDays], holdout_days: int, pooling: float, half_life_days: float = 0.0,
                  curvature: bool = True) -> dict:
    """Fit on all but the last `holdout_days`, then predict those days' units (at their
    prices and traffic) against a model that knows the traffic but not the price: units per
    view as before. WAPE over every product-day that was not sold out, and over the days a
    product's price was away from its usual one."""
    train = [ProductDays(p.product_id, p.category, p.cost, p.price[:-holdout_days], p.units[:-holdout_days],
                         p.weekday[:-holdout_days], p.views[:-holdout_days], p.short[:-holdout_days])
             for p in panel if len(p.price) > holdout_days + 7]
    model = fit_demand(train, pooling, half_life_days=half_life_days, curvature=curvature)
    errors = {"model": [0.0, 0.0], "no_price": [0.0, 0.0]}
    moved_errors = {"model": [0.0, 0.0], "no_price": [0.0, 0.0]}
    by_id = {p.product_id: p for p in panel}
    for row, product_id in enumerate(model.product_id):
        item, past = by_id[product_id], next(t for t in train if t.product_id == product_id)
        test = ProductDays(item.product_id, item.category, item.cost, item.price[-holdout_days:],
                           item.units[-holdout_days:], item.weekday[-holdout_days:], item.views[-holdout_days:],
                           item.short[-holdout_days:])
        keep = ~test.short
        rate = past.units[~past.short].sum() / max(past.views[~past.short].sum(), 1.0)
        guesses = {"model": _predicted(model, test, row), "no_price": rate * test.views}
        usual = np.median(past.price)
        moved = keep & (np.abs(test.price / usual - 1) > 0.02)
        for name, guess in guesses.items():
            errors[name][0] += np.abs(guess - test.units)[keep].sum()
            errors[name][1] += test.units[keep].sum()
            moved_errors[name][0] += np.abs(guess - test.units)[moved].sum()
            moved_errors[name][1] += test.units[moved].sum()
    return {"holdout_days": holdout_days,
            "wape": {k: round(a / max(b, 1e-9), 4) for k, (a, b) in errors.items()},
            "wape_price_moved": {k: round(a / max(b, 1e-9), 4) for k, (a, b) in moved_errors.items()}}


def recovery(model: DemandModel, truth: dict[str, float], panel: list[ProductDays]) -> dict:
    """Fitted against true elasticities: all products, and those with 50+ units sold."""
    sold = {p.product_id: p.units.sum() for p in panel}
    est = np.array(model.b1)
    true = np.array([truth[p] for p in model.product_id])
    big = np.array([sold[p] >= 50 for p in model.product_id])

    def stats(mask: np.ndarray) -> dict:
        if mask.sum() < 3:
            return {"products": int(mask.sum())}
        return {"products": int(mask.sum()), "mae": round(float(np.abs(est - true)[mask].mean()), 4),
                "correlation": round(float(np.corrcoef(est[mask], true[mask])[0, 1]), 4),
                "median_fitted": round(float(np.median(est[mask])), 4),
                "median_true": round(float(np.median(true[mask])), 4)}

    return {"all": stats(np.ones(len(est), bool)), "sold_50_or_more": stats(big)}


def train_pricing(events: Path, out: Path, catalog: Path | None = None, truth: Path | None = None,
                  pooling: float = 5.0, holdout_days: int = 14, half_life_days: float = 21.0, curvature: bool = True,
                  log=print) -> dict:
    started = time.monotonic()
    records = sorted(read_records(events), key=lambda r: r["timestamp"])
    products = list(read_catalog(catalog)) if catalog else []
    panel = daily_panel(records, products)
    version = f"demand-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    model = fit_demand(panel, pooling, version=version, half_life_days=half_life_days, curvature=curvature)
    if str(out).endswith(".npz"):
        model.save(out)
    else:  # a folder of versions: the next one, a candidate beside production
        out = write_file_version(out, DEMAND_FILE, model.save)
    report = {"events": str(events), "model": str(out), "version": version, "products_fitted": len(model),
              "products_seen": len(panel), "categories": len(model.category_elasticity),
              "median_elasticity": round(float(np.median(model.b1)), 4) if len(model) else None,
              "curvature_by_category": {c: round(float(model.b2[model.category.index(c)]), 4)
                                        for c in sorted(set(model.category))},
              "elastic_share": round(float(np.mean(model.b1 < -1)), 4) if len(model) else None}
    if holdout_days and panel and max(len(p.price) for p in panel) > holdout_days + 14:
        report["holdout"] = holdout_check(panel, holdout_days, pooling, half_life_days, curvature)
    if truth:
        known = json.loads(Path(truth).read_text())
        report["recovery"] = recovery(model, known["price_elasticity"], panel)
        if known.get("price_elasticity_long_run"):
            report["recovery_long_run"] = recovery(model, known["price_elasticity_long_run"], panel)
    report["seconds"] = round(time.monotonic() - started, 1)
    log(json.dumps(report, indent=1))
    return report
