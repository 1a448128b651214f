"""The pricing demand model: `q(p) = exp(b0 + b1 log p + b2 x)` per product, x the day of the
week, fitted as a Poisson regression of each day's units on that day's price, every product of
a category fitted together so that sparse products borrow strength: each product's elasticity
b1 is pulled toward its category's (a penalty `pooling * (b1_i - b1_category)^2`, the category's
value fitted with them), the weekday effects shared by the category.

Prices move by experiments (the simulator's; a shop's own price tests), which is what lets a
slope be read from the data at all."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from hanzo.server.pricing.demand_model import DemandModel

DAY_MS = 86_400_000
# The ridge on a category's curvature b2: price tests move prices by 5-20%, so (log p)^2 varies
# little and b2 is weakly identified; the ridge keeps it near 0 (log-log) until the data say more.
CURVATURE_RIDGE = 1.0


@dataclass
class ProductDays:
    """One product's daily history: its price in effect, units sold, weekday."""
    product_id: str
    category: str
    cost: float
    price: np.ndarray  # [days]
    units: np.ndarray  # [days]
    weekday: np.ndarray  # [days], 0 = Monday
    views: np.ndarray  # [days]: product views, the demand's exposure
    short: np.ndarray  # [days] bool: a shopper carted it and checked out without it (sold out)


def daily_panel(records: list[dict], catalog: list[dict], days: int | None = None) -> list[ProductDays]:
    """From the catalogue (starting prices, costs, categories) and the events: each day's price
    (the last price_change or catalog_update at or before noon) and units sold (purchases)."""
    first_day = min(r["timestamp"] for r in records) // DAY_MS
    # the last day anything sold or was seen (chargebacks arrive weeks after the shop's last day)
    last_day = (max(r["timestamp"] for r in records if r["event_type"] in ("purchase", "product_view")) // DAY_MS
                if days is None else first_day + days - 1)
    n_days = last_day - first_day + 1
    products = {p["product_id"]: p for p in catalog}
    changes: dict[str, list[tuple[int, float]]] = defaultdict(list)
    units: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(n_days))
    views: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(n_days))
    short: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(n_days, bool))
    carted: dict[str, set[str]] = defaultdict(set)  # session -> products put in its cart
    launched: dict[str, int] = {}
    for r in records:
        payload = r["payload"]
        kind = r["event_type"]
        if kind == "catalog_update":
            products.setdefault(payload["product_id"], payload)
            launched.setdefault(payload["product_id"], r["timestamp"] // DAY_MS - first_day)
            if payload.get("price") is not None:
                changes[payload["product_id"]].append((r["timestamp"], float(payload["price"])))
        elif kind == "price_change" and payload.get("price") is not None:
            changes[payload["product_id"]].append((r["timestamp"], float(payload["price"])))
        elif kind == "add_to_cart" and payload.get("product_id"):
            carted[r.get("session_id") or ""].add(payload["product_id"])
        elif kind == "order":
            # carted, then ordered without it: it was out of stock (sales that day are censored)
            bought = {line.get("product_id") for line in payload.get("items") or ()}
            day = r["timestamp"] // DAY_MS - first_day
            if 0 <= day < n_days:
                for missing in carted.pop(r.get("session_id") or "", set()) - bought:
                    short[missing][day] = True
        elif kind in ("purchase", "product_view") and payload.get("product_id"):
            day = r["timestamp"] // DAY_MS - first_day
            if 0 <= day < n_days:
                if kind == "purchase":
                    units[payload["product_id"]][day] += float(payload.get("quantity") or 1.0)
                else:
                    views[payload["product_id"]][day] += 1.0
    noon = (first_day + np.arange(n_days)) * DAY_MS + DAY_MS // 2
    weekday = ((first_day + np.arange(n_days) + 3) % 7).astype(np.int64)
    out = []
    for product_id, product in sorted(products.items()):
        if product.get("price") is None or product.get("cost") is None:
            continue
        moves = sorted(changes.get(product_id, []))
        stamps = np.array([t for t, _ in moves], np.int64)
        values = np.array([v for _, v in moves])
        price = np.full(n_days, float(product["price"]))
        if len(moves):
            where = np.searchsorted(stamps, noon, side="right") - 1
            price = np.where(where >= 0, values[np.maximum(where, 0)], price)
        start = launched.get(product_id, 0)
        category = (product.get("category") or ["?"])[0]  # pooled by top-level category
        out.append(ProductDays(product_id, category, float(product["cost"]), price[start:], units[product_id][start:],
                               weekday[start:], views[product_id][start:], short[product_id][start:]))
    return out


def _fit_category(items: list[ProductDays], pooling: float, exposure: bool, half_life_days: float = 0.0,
                  curvature: bool = True, iterations: int = 50) -> tuple:
    """Newton steps on the penalised Poisson log-likelihood of one category's products.
    Parameters: a_i (n), b_i (n), b_category (1), weekday effects Tuesday..Sunday (6), and with
    `curvature` the category's b2 on (log p / p_ref)^2 (kept <= 0, ridge-penalised). With
    `exposure` the day's product views are the offset (units per view: the traffic's own noise
    taken out) and days without a view are left out."""
    n = len(items)
    reference = np.array([np.exp(np.mean(np.log(it.price))) for it in items])
    rows = []
    for i, it in enumerate(items):
        keep = (it.views > 0 if exposure else np.ones(len(it.units), bool)) & ~it.short
        age = (len(it.units) - 1 - np.arange(len(it.units)))[keep]  # days before the panel's last
        weight = 0.5 ** (age / half_life_days) if half_life_days > 0 else np.ones(len(age))
        rows.append((i, np.log(it.price[keep] / reference[i]), it.units[keep], it.weekday[keep],
                     np.log(it.views[keep]) if exposure else np.zeros(int(keep.sum())), weight))
    product = np.concatenate([np.full(len(r[1]), r[0]) for r in rows])
    log_price = np.concatenate([r[1] for r in rows])
    y = np.concatenate([r[2] for r in rows])
    weekday = np.concatenate([r[3] for r in rows])
    offset = np.concatenate([r[4] for r in rows])
    w = np.concatenate([r[5] for r in rows])
    k = 2 * n + 1 + 6 + int(curvature)
    x = np.zeros((len(y), k))
    x[np.arange(len(y)), product] = 1.0
    x[np.arange(len(y)), n + product] = log_price
    for d in range(1, 7):
        x[:, 2 * n + 1 + d - 1] = weekday == d
    penalty = np.zeros((k, k))
    if curvature:
        x[:, -1] = log_price ** 2
        penalty[-1, -1] = CURVATURE_RIDGE
    for i in range(n):  # pooling * (b_i - b_cat)^2
        penalty[n + i, n + i] += pooling
        penalty[2 * n, 2 * n] += pooling
        penalty[n + i, 2 * n] -= pooling
        penalty[2 * n, n + i] -= pooling
    penalty += 1e-6 * np.eye(k)  # b_cat is otherwise free when pooling is 0
    theta = np.zeros(k)
    theta[:n] = np.log(np.array([max(it.units.sum(), 1e-3) / max(it.views.sum() if exposure else len(it.units), 1.0)
                                 for it in items]))
    for _ in range(iterations):
        eta = np.clip(x @ theta + offset, -30, 30)
        mu = np.exp(eta)
        gradient = x.T @ (w * (y - mu)) - penalty @ theta
        hessian = (x * (w * mu)[:, None]).T @ x + penalty
        step = np.linalg.solve(hessian, gradient)
        theta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    weekdays = np.concatenate([[0.0], theta[2 * n + 1:2 * n + 7]])
    b2 = min(float(theta[-1]), 0.0) if curvature else 0.0
    intercept = theta[:n]
    if exposure:  # per day again: at the product's usual traffic
        intercept = intercept + np.log(np.array([max(it.views.mean(), 1e-9) for it in items]))
    return reference, intercept, theta[n:2 * n], np.tile(weekdays, (n, 1)), float(theta[2 * n]), b2


def fit_demand(panel: list[ProductDays], pooling: float = 5.0, min_units: float = 1.0,
               exposure: bool = True, version: str = "", half_life_days: float = 0.0,
               curvature: bool = True) -> DemandModel:
    """Every category fitted on its own; products that never sold are left out (QuotePrice
    prices them from their category's elasticity). With `half_life_days` a day's weight halves
    every that many days back: the curve is read near today's prices (a log-log curve's slope
    is local when the true demand is not log-log)."""
    by_category: dict[str, list[ProductDays]] = defaultdict(list)
    for item in panel:
        if item.units.sum() >= min_units and len(item.price) >= 7:
            by_category[item.category].append(item)
    ids, categories, costs, references, b0, b1, weekday = [], [], [], [], [], [], []
    views, low, high, by_category_b1, curvatures = [], [], [], {}, []
    for category, items in sorted(by_category.items()):
        reference, a, b, w, b_category, b2 = _fit_category(items, pooling, exposure, half_life_days, curvature)
        curvatures += [b2] * len(items)
        ids += [it.product_id for it in items]
        categories += [category] * len(items)
        costs += [it.cost for it in items]
        views += [float(it.views.mean()) for it in items]
        low += [float(it.price.min()) for it in items]
        high += [float(it.price.max()) for it in items]
        by_category_b1[category] = b_category if pooling > 0 else float(np.median(b))
        references.append(reference)
        b0.append(a)
        b1.append(b)
        weekday.append(w)
    if not ids:
        return DemandModel.empty()
    return DemandModel(ids, categories, np.array(costs), np.concatenate(references), np.concatenate(b0),
                       np.concatenate(b1), np.concatenate(weekday), np.array(views), np.array(low), np.array(high),
                       by_category_b1, version, np.array(curvatures))
