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
from .calendar import infer_future
from .ensemble import Choice, forecast_table
from .forecast import Forecast, Series
from .policy import Z90, step_sigma
from .sales import future_steps, read_sales, regular_steps


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


@dataclass
class TableForecast:
    """Every series of a sales table forecast, with what the nightly job chose and assumed."""
    keys: list[tuple[str, str]]
    forecasts: list[Forecast]
    steps: list[int]
    choices: dict[int, Choice]  # step length (days) -> the combination its series' backtest chose
    assumed: dict[tuple[str, str], str]  # series whose future rows were not all given -> what was assumed


def forecast_sales(sales: Path, horizon: int, inner: int | None = None, statistical: bool | None = None
                   ) -> TableForecast:
    """Forecast every series of a sales table `horizon` steps past its last known step (its
    known future rows, planned promotions and closings, taken into account; the calendar
    inferred where they are not given)."""
    history, known = read_sales(sales)
    groups: dict[int, dict[str, tuple[tuple[str, str], Series]]] = {}
    for key, series in sorted(history.items()):
        if len(series) >= 2:
            series = regular_steps(series)
            members = groups.setdefault(series.step_days, {})
            members[str(len(members))] = (key, series)
    out = TableForecast([], [], [], {}, {})
    for step, members in sorted(groups.items()):
        histories = {name: series for name, (_, series) in members.items()}
        futures, given = {}, {}
        for name, (key, series) in members.items():
            futures[name], assumed = future_steps(series, horizon, known.get(key))
            given[name] = _steps_given(series, horizon, known.get(key))
            if assumed is not None:
                out.assumed[key] = assumed.describe()
        forecasts, out.choices[step] = forecast_table(histories, futures, horizon, _backtest_flags(given), inner,
                                                      statistical)
        for name, (key, _) in members.items():
            out.keys.append(key)
            out.forecasts.append(forecasts[name])
            out.steps.append(step)
    return out


def _steps_given(series: Series, horizon: int, known: Series | None) -> int:
    """How many of the next steps, from the first, the table's future rows give."""
    if known is None:
        return 0
    step = np.timedelta64(series.step_days, "D")
    dates = set(known.dates.tolist())
    ahead = (series.dates[-1] + step * np.arange(1, horizon + 1)).tolist()
    return next((h for h, d in enumerate(ahead) if d not in dates), horizon)


def _backtest_flags(given: dict[str, int]):
    """A backtest window knows what the forecast will know: a series' flags for as many steps as
    its future rows give, the inferred calendar past them."""
    def flags(name: str, past: Series, held: Series) -> Series:
        inferred = infer_future(past, held.dates)[0]
        k = min(given.get(name, 0), len(held))
        if k:
            for column in ("promo", "holiday", "open"):
                getattr(inferred, column)[:k] = getattr(held, column)[:k]
        return inferred
    return flags


def build_plan(sales: Path, horizon: int, version: str, table: TableForecast | None = None,
               statistical: bool | None = None) -> InventoryPlan:
    """The plan PlanInventory answers from (forecast_sales's forecasts, or `table`'s)."""
    table = table or forecast_sales(sales, horizon, statistical=statistical)
    if not table.keys:
        empty = np.zeros((0, horizon))
        return InventoryPlan([], np.array([], "datetime64[D]"), np.array([], np.int64), empty, empty, empty, version)
    return InventoryPlan(table.keys, np.array([f.dates[0] for f in table.forecasts], "datetime64[D]"),
                         np.array(table.steps, np.int64), np.array([f.mean for f in table.forecasts]),
                         np.array([f.low for f in table.forecasts]), np.array([f.high for f in table.forecasts]),
                         version)
