"""The nightly inventory plan: every (product, location) series' forecast over the horizon
(mean and 10-90% band per step), written by `hanzo plan-inventory` and read by the server's
PlanInventory, which turns it into a safety stock and reorder point for the service level and
lead time each call asks for."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.files import save_npz_atomic
from .forecast import fit_forecast
from .policy import Z90, step_sigma
from .sales import future_steps, read_sales


@dataclass
class InventoryPlan:
    keys: list[tuple[str, str]]  # (location, product_id)
    start: np.ndarray  # datetime64[D] of each series' first forecast step
    step_days: np.ndarray  # int, 1 (daily) or 7 (weekly)
    mean: np.ndarray  # float64 [series, horizon]
    low: np.ndarray
    high: np.ndarray
    version: str  # when it was made and from what, for the responses' model_version

    def __post_init__(self) -> None:
        self._row = {key: i for i, key in enumerate(self.keys)}

    @property
    def horizon(self) -> int:
        return self.mean.shape[1]

    def row(self, product_id: str, location: str) -> int | None:
        return self._row.get((location, product_id))

    def save(self, path: Path) -> None:
        save_npz_atomic(path, keys=np.array(json.dumps(self.keys)),
                        start=self.start.astype("datetime64[D]").astype(np.int64), step_days=self.step_days,
                        mean=self.mean, low=self.low, high=self.high, version=np.array(self.version))

    @classmethod
    def load(cls, path: Path) -> "InventoryPlan":
        with np.load(path) as data:
            keys = [tuple(k) for k in json.loads(str(data["keys"]))]
            return cls(keys, data["start"].astype("datetime64[D]"), data["step_days"], data["mean"], data["low"],
                       data["high"], str(data["version"]))


def with_totals(plan: InventoryPlan, location: str = "ALL") -> InventoryPlan:
    """The plan with every product's locations added up under `location`, bottom-up (the sum
    of the locations' forecasts, their spreads combined as independent), for the products
    that have no series of that name already; series of different step lengths or starts
    are not added."""
    groups: dict[str, list[int]] = {}
    for row, (where, product) in enumerate(plan.keys):
        groups.setdefault(product, []).append(row)
    keys, starts, steps, means, lows, highs = list(plan.keys), [plan.start], [plan.step_days], [plan.mean], \
        [plan.low], [plan.high]
    for product, rows in groups.items():
        if plan.row(product, location) is not None or len({(int(plan.step_days[r]), plan.start[r]) for r in rows}) > 1:
            continue
        mean = plan.mean[rows].sum(axis=0)
        spread = np.sqrt((step_sigma(plan.low[rows], plan.high[rows]) ** 2).sum(axis=0)) * Z90
        keys.append((location, product))
        starts.append(plan.start[rows[:1]])
        steps.append(plan.step_days[rows[:1]])
        means.append(mean[None])
        lows.append(np.maximum(mean - spread, 0.0)[None])
        highs.append((mean + spread)[None])
    return InventoryPlan(keys, np.concatenate(starts), np.concatenate(steps), np.concatenate(means),
                         np.concatenate(lows), np.concatenate(highs), plan.version)


def build_plan(sales: Path, horizon: int, version: str) -> InventoryPlan:
    """Forecast every series of a sales table `horizon` steps past its last known step (its
    known future rows, planned promotions and closings, taken into account)."""
    history, known = read_sales(sales)
    keys, starts, steps, means, lows, highs = [], [], [], [], [], []
    for (location, sku), series in sorted(history.items()):
        if len(series) < 2:
            continue
        forecast = fit_forecast(series, future_steps(series, horizon, known.get((location, sku))))
        keys.append((location, sku))
        starts.append(forecast.dates[0])
        steps.append(series.step_days)
        means.append(forecast.mean)
        lows.append(forecast.low)
        highs.append(forecast.high)
    empty = np.zeros((0, horizon))
    return InventoryPlan(keys, np.array(starts, "datetime64[D]"), np.array(steps, np.int64),
                         np.array(means) if means else empty, np.array(lows) if lows else empty,
                         np.array(highs) if highs else empty, version)
