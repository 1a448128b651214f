"""The fitted demand model QuotePrice prices from: per product `q(p) = exp(b0 + b1 x + b2 x^2 +
w[weekday])`, x = log(p / p_ref), units a day at the product's usual traffic, the range of prices it was
fitted on, and per category the pooled elasticity and weekday effects for products the fit has
not seen (new, or never sold). Written by `hanzo train pricing`, one .npz."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.files import save_npz_atomic

# what each version folder of a versioned demand model holds (`<folder>/<n>/demand.npz`)
DEMAND_FILE = "demand.npz"


@dataclass
class DemandCurve:
    """One product's demand as QuotePrice needs it."""
    elasticity: float  # b1: at the reference price
    curvature: float  # b2 <= 0: how much more elastic demand grows per unit of log price
    reference_price: float
    reference_units: float  # units a day at the reference price, at the usual traffic, today's weekday
    usual_views: float  # product views a day the fit saw (0: unknown)
    weekday_lift: float  # today's weekday effect against the week's mean, as a factor
    price_low: float  # the range of prices the fit saw; 0 and inf when it is a category's curve
    price_high: float
    pooled: bool  # the category's elasticity (the product has no fit of its own)

    def units(self, price: float, traffic: float = 1.0) -> float:
        x = math.log(price / self.reference_price)
        return self.reference_units * traffic * math.exp(self.elasticity * x + self.curvature * x * x)

    def elasticity_at(self, price: float) -> float:
        return self.elasticity + 2.0 * self.curvature * math.log(price / self.reference_price)


@dataclass
class DemandModel:
    product_id: list[str]
    category: list[str]  # the top-level category each product was pooled in
    cost: np.ndarray
    reference_price: np.ndarray  # the geometric mean of its prices: where b0 is read
    b0: np.ndarray  # log units a day at the reference price, Monday, usual traffic
    b1: np.ndarray  # elasticity
    weekday: np.ndarray  # [products, 7] log effects, Monday 0
    views_per_day: np.ndarray  # the traffic b0 is at
    price_low: np.ndarray
    price_high: np.ndarray
    category_elasticity: dict[str, float]
    version: str = ""
    # b2 per product (its category's: shared), 0 for the paper's log-log curve
    curvature: np.ndarray | None = None

    @property
    def b2(self) -> np.ndarray:
        return self.curvature if self.curvature is not None else np.zeros(len(self.product_id))

    def __post_init__(self) -> None:
        self._row = {p: i for i, p in enumerate(self.product_id)}
        category_weekday = {c: self.weekday[[i for i, x in enumerate(self.category) if x == c]].mean(axis=0)
                            for c in self.category_elasticity if c in set(self.category)}
        # what a quote reads, as plain floats (a call touches one row: numpy scalars cost more)
        lift = np.exp(self.weekday - np.log(np.exp(self.weekday).mean(axis=1, keepdims=True)))
        units = np.exp(self.b0[:, None] + self.weekday)
        b2 = self.b2
        self._category_b2 = {c: float(b2[self.category.index(c)]) for c in set(self.category)}
        self._rows = [(float(self.b1[i]), float(b2[i]), float(self.reference_price[i]), units[i].tolist(),
                       float(self.views_per_day[i]), lift[i].tolist(), float(self.price_low[i]),
                       float(self.price_high[i])) for i in range(len(self.product_id))]
        self._category_lift = {c: [float(x) for x in np.exp(w - np.log(np.exp(w).mean()))]
                               for c, w in category_weekday.items()}

    def __len__(self) -> int:
        return len(self.product_id)

    def row(self, product_id: str) -> int | None:
        return self._row.get(product_id)

    def expected_units(self, row: int, price: np.ndarray, weekday: int | np.ndarray) -> np.ndarray:
        """Units a day at each price, on each weekday given (one, or one per price)."""
        x = np.log(np.asarray(price) / self.reference_price[row])
        return np.exp(self.b0[row] + self.b1[row] * x + self.b2[row] * x * x + self.weekday[row, weekday])

    def curve(self, product_id: str, category: str, weekday: int, price: float, units_per_day: float
              ) -> DemandCurve | None:
        """The product's own curve; else its category's elasticity through the product's
        current price and recent sales (`units_per_day`); None when neither is known."""
        row = self._row.get(product_id)
        if row is not None:
            b1, b2, reference, units, views, lift, low, high = self._rows[row]
            return DemandCurve(b1, b2, reference, units[weekday], views, lift[weekday], low, high, False)
        if category not in self.category_elasticity:
            return None
        lift = self._category_lift.get(category, [1.0] * 7)[weekday]
        return DemandCurve(self.category_elasticity[category], self._category_b2.get(category, 0.0), price,
                           units_per_day * lift, 0.0, lift, 0.0, math.inf, True)

    def save(self, path: Path) -> None:
        save_npz_atomic(path, product_id=np.array(json.dumps(self.product_id)),
                        category=np.array(json.dumps(self.category)), cost=self.cost,
                        reference_price=self.reference_price, b0=self.b0, b1=self.b1, weekday=self.weekday,
                        views_per_day=self.views_per_day, price_low=self.price_low, price_high=self.price_high,
                        category_elasticity=np.array(json.dumps(self.category_elasticity)),
                        version=np.array(self.version), curvature=self.b2)

    @classmethod
    def load(cls, path: Path) -> "DemandModel":
        with np.load(path) as data:
            return cls(json.loads(str(data["product_id"])), json.loads(str(data["category"])), data["cost"],
                       data["reference_price"], data["b0"], data["b1"], data["weekday"], data["views_per_day"],
                       data["price_low"], data["price_high"], json.loads(str(data["category_elasticity"])),
                       str(data["version"]), data["curvature"] if "curvature" in data else None)

    @classmethod
    def empty(cls) -> "DemandModel":
        z = np.zeros(0)
        return cls([], [], z, z, z, z, np.zeros((0, 7)), z, z, z, {})
