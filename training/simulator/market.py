"""Prices and stock. Demand is a choice model on price relative to the category's typical
price and to a reference price the shoppers remember (loss-averse when a price rises above
it), so it is not the log-log demand the pricing model fits. Price experiments move prices
for some days; stock runs down with purchases and is restocked after a lead time."""
from __future__ import annotations

import numpy as np

from .catalog import Catalog
from .population import LOCATIONS

REFERENCE_HALF_LIFE_DAYS = 14.0
LOSS_AVERSION = 2.0  # extra weight of a price above its reference
PRICE_STEPS = (0.8, 0.85, 0.9, 0.95, 1.05, 1.1, 1.15, 1.2)


class Market:
    def __init__(self, rng: np.random.Generator, catalog: Catalog, experiment_rate: float = 0.02) -> None:
        self.rng = rng
        self.experiment_rate = experiment_rate  # chance a product not under test starts one today
        self.policy = None  # (day, market) -> every product's price today, in place of experiments
        self.catalog = catalog
        n = len(catalog)
        self.price = catalog.base_price.copy()
        self.reference = catalog.base_price.copy()
        self.experiment_ends = np.full(n, -1)
        sub_median = {}
        for s in np.unique(catalog.sub):
            sub_median[s] = float(np.median(catalog.base_price[catalog.sub == s]))
        self.typical = np.array([sub_median[s] for s in catalog.sub])
        self.stock = {loc: rng.poisson(60, n).astype(float) for loc in LOCATIONS}
        self.on_order = {loc: np.zeros(n, dtype=bool) for loc in LOCATIONS}
        self.arrivals: list[tuple[int, str, int, float]] = []  # (day, location, product, quantity)
        self.sold_today = {loc: np.zeros(n) for loc in LOCATIONS}
        self.sales_rate = {loc: np.full(n, 1.0) for loc in LOCATIONS}

    def price_utility(self, i: int, beta: float) -> float:
        """The price part of a shopper's utility for product i: linear in price relative to
        the category, plus loss aversion above the remembered reference price."""
        relative = self.price[i] / self.typical[i]
        above = max(0.0, self.price[i] / self.reference[i] - 1.0)
        return -beta * relative - LOSS_AVERSION * beta * above

    def rebuy_factor(self, i: int, beta: float, loss_aversion: float = LOSS_AVERSION) -> float:
        """How a price above the usual one thins a shopper's repeat or planned purchase (1 at
        or below it): the price's distance from the base relative to the category's typical
        price (lasting), plus loss aversion above the remembered reference (fading as the
        reference catches up)."""
        over = (self.price[i] - self.catalog.base_price[i]) / self.typical[i]
        above = max(0.0, self.price[i] / self.reference[i] - 1.0)
        return float(min(1.0, np.exp(-beta * (over + loss_aversion * above))))

    def start_day(self, day: int) -> list[tuple[str, int, float]]:
        """Price moves for the day: [(kind, product, value)] with kind 'price'. With a pricing
        policy set (a closed-loop replay), it sets every price and no experiments run."""
        if self.policy is not None:
            prices = np.round(np.asarray(self.policy(day, self), dtype=float), 2)
            moved = np.flatnonzero(prices != self.price)
            self.price[moved] = prices[moved]
            return [("price", int(i), float(self.price[i])) for i in moved]
        changes = []
        ended = np.flatnonzero(self.experiment_ends == day)
        for i in ended:
            self.price[i] = self.catalog.base_price[i]
            self.experiment_ends[i] = -1
            changes.append(("price", int(i), float(self.price[i])))
        draws = self.rng.random(len(self.price))
        starting = np.flatnonzero((draws < self.experiment_rate) & (self.experiment_ends < 0))
        for i in starting:
            step = PRICE_STEPS[int(self.rng.integers(len(PRICE_STEPS)))]
            self.price[i] = round(self.catalog.base_price[i] * step, 2)
            self.experiment_ends[i] = day + int(self.rng.integers(3, 11))
            changes.append(("price", int(i), float(self.price[i])))
        return changes

    def end_day(self, day: int) -> list[tuple[str, int, float]]:
        """Reference prices move toward today's; restocks arrive or are ordered. Returns the
        stock updates of the day [(location, product, new level)]."""
        alpha = 1 - 0.5 ** (1 / REFERENCE_HALF_LIFE_DAYS)
        self.reference += alpha * (self.price - self.reference)
        updates = []
        due = [a for a in self.arrivals if a[0] == day]
        self.arrivals = [a for a in self.arrivals if a[0] != day]
        for _, loc, i, quantity in due:
            self.stock[loc][i] += quantity
            self.on_order[loc][i] = False
            updates.append((loc, i, float(self.stock[loc][i])))
        for loc in LOCATIONS:
            self.sales_rate[loc] = 0.9 * self.sales_rate[loc] + 0.1 * self.sold_today[loc]
            self.sold_today[loc][:] = 0
            lead = 5
            low = (self.stock[loc] < self.sales_rate[loc] * (lead + 3) + 2) & ~self.on_order[loc]
            for i in np.flatnonzero(low):
                quantity = float(np.ceil(self.sales_rate[loc][i] * 21 + 10))
                self.arrivals.append((day + int(self.rng.integers(3, 8)), loc, int(i), quantity))
                self.on_order[loc][i] = True
        return updates

    def available(self, location: str, i: int, quantity: float = 1.0) -> bool:
        return self.stock[location][i] >= quantity

    def sell(self, location: str, i: int, quantity: float) -> None:
        self.stock[location][i] -= quantity
        self.sold_today[location][i] += quantity
