"""The simulation: day by day, shoppers run sessions (browse, search, cart, buy, come back for
what runs out), prices move, stock runs down and is restocked, fraudsters place orders, and
chargebacks arrive weeks later. Every happening is an event in the canonical format."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np

from .catalog import DIM, Catalog, build_catalog
from .market import LOSS_AVERSION, REFERENCE_HALF_LIFE_DAYS, Market
from .population import LOCATIONS, Shopper, build_shoppers, drift
from .search import EXAMINE_ETA, SearchEngine, examine_probability

DAY_MS = 86_400_000
# Share of the day's sessions that start in each hour (evenings busiest).
HOURLY = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 3.5, 4, 3.5, 3.5, 3.5, 4, 4.5, 5.5, 6.5, 7,
                   6, 4, 2], dtype=float)
HOURLY /= HOURLY.sum()
WEEKDAY = np.array([1.0, 0.95, 0.95, 1.0, 1.1, 1.25, 1.2])  # Monday first


@dataclass
class SimulationConfig:
    seed: int = 7
    users: int = 2000
    products: int = 600
    days: int = 30
    start: str = "2026-01-05"  # a Monday
    anonymous_share: float = 0.15
    fraud_level: float = 1.0  # scales every fraud pattern's rate
    new_product_share: float = 0.05


@dataclass
class Truth:
    """What the simulation knows and a model can only estimate."""
    config: dict
    fraud_orders: dict[str, str] = field(default_factory=dict)  # order_id -> pattern
    chargebacks: dict[str, str] = field(default_factory=dict)  # order_id -> "fraud" | "friendly"
    examine_eta: float = EXAMINE_ETA
    loss_aversion: float = LOSS_AVERSION
    reference_half_life_days: float = REFERENCE_HALF_LIFE_DAYS
    price_beta: dict[str, float] = field(default_factory=dict)  # user -> price sensitivity


class Simulation:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.catalog: Catalog = build_catalog(self.rng, config.products, config.days, config.new_product_share)
        self.shoppers: list[Shopper] = build_shoppers(self.rng, config.users)
        self.market = Market(self.rng, self.catalog)
        self.search = SearchEngine(self.rng, self.catalog)
        self.start_ms = int(datetime.fromisoformat(config.start).replace(tzinfo=timezone.utc).timestamp() * 1000)
        self.events: list[dict] = []
        self.truth = Truth(config=asdict(config), price_beta={s.user_id: s.price_beta for s in self.shoppers})
        self.popularity = np.ones(len(self.catalog))
        self._ids = 0
        self._sessions = 0
        self._orders = 0
        self._fraudsters = 0

    # ------------------------------------------------------------------ output

    def emit(self, ts: int, kind: str, user: str | None, session: str, payload: dict,
             context: dict | None = None) -> str:
        self._ids += 1
        event_id = f"sim-{self._ids:08d}"
        self.events.append({"event_id": event_id, "event_type": kind, "timestamp": int(ts), "user_id": user,
                            "session_id": session, "payload": payload, "context": context or {}})
        return event_id

    def initial_catalog(self) -> list[dict]:
        return [self.catalog.record(i, self.market.price[i], self._stock_total(i))
                for i in range(len(self.catalog)) if self.catalog.launch_day[i] == 0]

    def _stock_total(self, i: int) -> float:
        return float(sum(self.market.stock[loc][i] for loc in LOCATIONS))

    # ------------------------------------------------------------------ the run

    def run(self) -> "Simulation":
        for day in range(self.config.days):
            self._day(day)
        self.events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
        return self

    def _day(self, day: int) -> None:
        day_ms = self.start_ms + day * DAY_MS
        rng = self.rng
        for i in np.flatnonzero(self.catalog.launch_day == day):
            if day > 0:
                record = self.catalog.record(int(i), self.market.price[i], self._stock_total(int(i)))
                self.emit(day_ms + int(rng.integers(0, 3_600_000)), "catalog_update", None, "", record)
        for _, i, price in self.market.start_day(day):
            self.emit(day_ms + int(rng.integers(0, 3_600_000)), "price_change", None, "",
                      {"product_id": self.catalog.ids[i], "price": price})
        launched = self.catalog.launch_day <= day
        weekday = WEEKDAY[(datetime.fromtimestamp(day_ms / 1000, tz=timezone.utc).weekday())]
        for shopper in self.shoppers:
            drift(rng, shopper)
            due = [p for p, when in shopper.needs.items() if when <= day]
            sessions = rng.poisson(shopper.activity * weekday) + (1 if due and rng.random() < 0.7 else 0)
            for _ in range(sessions):
                start = day_ms + int(rng.choice(24, p=HOURLY)) * 3_600_000 + int(rng.integers(0, 3_600_000))
                self._session(shopper, start, launched, due)
                due = []
        self._fraud(day, day_ms, launched)
        for loc, i, level in self.market.end_day(day):
            self.emit(day_ms + DAY_MS - 1 - int(rng.integers(0, 3_600_000)), "stock_update", None, "",
                      {"product_id": self.catalog.ids[i], "location": loc, "quantity": level})
        self.popularity *= 0.97

    # ------------------------------------------------------------------ a shopper's session

    def _appeal(self, shopper: Shopper, items: np.ndarray) -> np.ndarray:
        catalog = self.catalog
        return catalog.vectors[items] @ shopper.taste / np.sqrt(DIM) * 2.0 + catalog.quality[items]

    def _session(self, shopper: Shopper, start: int, launched: np.ndarray, due: list[str]) -> None:
        rng, catalog = self.rng, self.catalog
        self._sessions += 1
        session = f"s{self._sessions:07d}"
        user = None if rng.random() < self.config.anonymous_share else shopper.user_id
        device = shopper.devices[int(rng.integers(len(shopper.devices)))]
        context = {"device": device}
        t = start
        self.emit(t, "page_view", user, session, {}, context)
        cart: list[tuple[int, float]] = []
        if due:
            # Back for what ran out: straight to the product, usually bought again.
            i = catalog.ids.index(due[0])
            t += int(rng.exponential(20_000)) + 1000
            self.emit(t, "product_view", user, session,
                      {"product_id": catalog.ids[i], "price": float(self.market.price[i])}, context)
            if rng.random() < 0.8:
                cart.append((i, 1.0))
                t += int(rng.exponential(15_000)) + 1000
                self.emit(t, "add_to_cart", user, session, {"product_id": catalog.ids[i], "quantity": 1.0,
                                                            "price": float(self.market.price[i])}, context)
            shopper.needs.pop(due[0], None)
        viewed: list[int] = []
        if rng.random() < 0.35:
            t = self._search(shopper, user, session, context, t, launched, viewed)
        else:
            # Browse a category the shopper likes.
            candidates = np.flatnonzero(launched)
            affinity = self._appeal(shopper, candidates)
            sub_of = catalog.sub[candidates]
            subs = np.unique(sub_of)
            sub_scores = np.array([affinity[sub_of == s].max() for s in subs])
            p = np.exp(sub_scores - sub_scores.max())
            chosen_sub = subs[rng.choice(len(subs), p=p / p.sum())]
            pool = candidates[sub_of == chosen_sub]
            weights = np.exp(self._appeal(shopper, pool) + 0.3 * np.log1p(self.popularity[pool]))
            n_views = min(len(pool), 1 + rng.poisson(2.5))
            for i in rng.choice(pool, size=n_views, replace=False, p=weights / weights.sum()):
                t += int(rng.exponential(35_000)) + 1000
                self.emit(t, "product_view", user, session, {"product_id": catalog.ids[i],
                                                             "price": float(self.market.price[i])}, context)
                viewed.append(int(i))
        for i in viewed:
            self.popularity[i] += 1
            utility = -1.2 + self._appeal(shopper, np.array([i]))[0] + self.market.price_utility(i, shopper.price_beta)
            if rng.random() < 1 / (1 + np.exp(-utility)):
                quantity = float(1 + (rng.random() < 0.15))
                cart.append((i, quantity))
                t += int(rng.exponential(20_000)) + 1000
                self.emit(t, "add_to_cart", user, session, {"product_id": catalog.ids[i], "quantity": quantity,
                                                            "price": float(self.market.price[i])}, context)
        if cart and rng.random() < 0.65:
            t += int(rng.exponential(60_000)) + 5000
            self._checkout(shopper, user, session, device, t, cart)

    def _search(self, shopper: Shopper, user, session, context, t, launched, viewed: list[int]) -> int:
        rng, catalog = self.rng, self.catalog
        candidates = np.flatnonzero(launched)
        weights = np.exp(self._appeal(shopper, candidates))
        target = int(rng.choice(candidates, p=weights / weights.sum()))
        query = self.search.query_for(target)
        shown = self.search.results(query, launched, self.popularity)
        t += int(rng.exponential(10_000)) + 1000
        search_id = self.emit(t, "search", user, session, {"query": query,
                                                           "product_ids": [catalog.ids[i] for i in shown]}, context)
        target_tokens = set(catalog.noun[target].split())
        for rank, i in enumerate(shown, 1):
            if rng.random() >= examine_probability(rank):
                continue
            relevant = bool(target_tokens & set(catalog.noun[i].split()))
            attraction = 0.15 + 0.55 * relevant + 0.15 * (1 / (1 + np.exp(-self._appeal(shopper, np.array([i]))[0])))
            if rng.random() < attraction:
                t += int(rng.exponential(15_000)) + 1000
                self.emit(t, "product_view", user, session, {"product_id": catalog.ids[i],
                                                             "price": float(self.market.price[i])},
                          {**context, "source": "search", "search_event_id": search_id, "position": str(rank)})
                viewed.append(i)
        return t

    def _checkout(self, shopper: Shopper, user, session, device, t, cart) -> None:
        rng, catalog, market = self.rng, self.catalog, self.market
        items = [(i, q) for i, q in cart if market.available(shopper.location, i, q)]
        if not items:
            return
        self._orders += 1
        order_id = f"o{self._orders:07d}"
        lines = []
        for i, quantity in items:
            price = float(market.price[i])
            market.sell(shopper.location, i, quantity)
            self.emit(t, "purchase", user, session, {"product_id": catalog.ids[i], "quantity": quantity,
                                                     "price": price, "amount": round(price * quantity, 2),
                                                     "order_id": order_id}, {"device": device})
            lines.append({"product_id": catalog.ids[i], "quantity": quantity, "price": price})
            if catalog.repeat_days[i]:
                shopper.needs[catalog.ids[i]] = (t - self.start_ms) / DAY_MS + rng.gamma(
                    6.0, catalog.repeat_days[i] / 6.0)
        amount = round(sum(line["quantity"] * line["price"] for line in lines), 2)
        card = shopper.cards[int(rng.integers(len(shopper.cards)))]
        address = shopper.addresses[0] if rng.random() < 0.85 else shopper.addresses[-1]
        self.emit(t + 500, "order", shopper.user_id, session, {
            "order_id": order_id, "amount": amount, "currency": "USD", "card_id": card, "device_id": device,
            "ip": f"{shopper.ip_prefix}.{rng.integers(1, 255)}", "email": shopper.email,
            "shipping_address_id": address, "billing_address_id": shopper.addresses[0], "items": lines,
            "location": shopper.location,
            "signals": {"avs_match": 1.0, "cvv_match": float(rng.random() < 0.995),
                        "ip_distance_km": round(float(rng.exponential(15)), 1)}}, {"device": device})
        if rng.random() < 0.0015:  # friendly fraud: a real customer disputes a real order
            self._chargeback(order_id, t, "friendly")

    def _chargeback(self, order_id: str, order_ts: int, kind: str) -> None:
        delay = int(self.rng.uniform(14, 60) * DAY_MS)
        self.emit(order_ts + delay, "chargeback", None, "", {"order_id": order_id})
        self.truth.chargebacks[order_id] = kind

    # ------------------------------------------------------------------ fraud

    def _fraud(self, day: int, day_ms: int, launched: np.ndarray) -> None:
        level = self.config.fraud_level * len(self.shoppers) / 2000
        rng = self.rng
        for _ in range(rng.poisson(0.05 * level)):
            self._card_testing(day_ms, launched)
        for _ in range(rng.poisson(0.08 * level)):
            self._account_takeover(day_ms, launched)
        if rng.random() < 0.025 * level:
            self._ring(day, day_ms, launched)

    def _fraud_order(self, user: str, t: int, items: list[tuple[int, float]], card: str, device: str, address: str,
                     billing: str, email: str, ip: str, pattern: str, signals: dict) -> None:
        catalog, market = self.catalog, self.market
        self._orders += 1
        order_id = f"o{self._orders:07d}"
        session = f"f{self._orders:07d}"
        location = LOCATIONS[int(self.rng.integers(len(LOCATIONS)))]
        lines = []
        for i, quantity in items:
            price = float(market.price[i])
            if market.available(location, i, quantity):
                market.sell(location, i, quantity)
            self.emit(t, "purchase", user, session, {"product_id": catalog.ids[i], "quantity": quantity,
                                                     "price": price, "amount": round(price * quantity, 2),
                                                     "order_id": order_id}, {"device": device})
            lines.append({"product_id": catalog.ids[i], "quantity": quantity, "price": price})
        amount = round(sum(line["quantity"] * line["price"] for line in lines), 2)
        self.emit(t + 500, "order", user, session, {
            "order_id": order_id, "amount": amount, "currency": "USD", "card_id": card, "device_id": device,
            "ip": ip, "email": email, "shipping_address_id": address, "billing_address_id": billing, "items": lines,
            "location": location, "signals": signals}, {"device": device})
        self.truth.fraud_orders[order_id] = pattern
        if self.rng.random() < 0.9:
            self._chargeback(order_id, t, "fraud")

    def _pricey(self, launched: np.ndarray, k: int) -> list[int]:
        catalog = self.catalog
        pool = np.flatnonzero(launched & (catalog.base_price > np.quantile(catalog.base_price, 0.7)))
        return [int(i) for i in self.rng.choice(pool, size=min(k, len(pool)), replace=False)]

    def _cheap(self, launched: np.ndarray) -> int:
        pool = np.flatnonzero(launched & (self.catalog.base_price < np.quantile(self.catalog.base_price, 0.2)))
        return int(self.rng.choice(pool))

    def _card_testing(self, day_ms: int, launched: np.ndarray) -> None:
        """A new account tries stolen cards with small orders in quick succession, then spends."""
        rng = self.rng
        self._fraudsters += 1
        user = f"fu{self._fraudsters:05d}"
        device, address, email = f"dev-{user}", f"addr-{user}", f"{user}@mailinator.example"
        t = day_ms + int(rng.integers(0, DAY_MS - 3_600_000))
        cards = [f"card-stolen-{user}-{k}" for k in range(int(rng.integers(3, 9)))]
        ip = f"172.16.{rng.integers(0, 250)}.{rng.integers(1, 255)}"
        for card in cards:
            t += int(rng.exponential(120_000)) + 5000
            self._fraud_order(user, t, [(self._cheap(launched), 1.0)], card, device, address, address, email, ip,
                              "card_testing", {"avs_match": float(rng.random() < 0.3), "cvv_match": float(
                                  rng.random() < 0.6), "ip_distance_km": round(float(rng.exponential(800)), 1)})
        t += int(rng.exponential(600_000))
        self._fraud_order(user, t, [(i, 1.0) for i in self._pricey(launched, 2)], cards[-1], device, address,
                          address, email, ip, "card_testing",
                          {"avs_match": 0.0, "cvv_match": 1.0, "ip_distance_km": round(float(rng.exponential(800)), 1)})

    def _account_takeover(self, day_ms: int, launched: np.ndarray) -> None:
        """A stolen login: a real shopper's account and card, a new device and address."""
        rng = self.rng
        victim = self.shoppers[int(rng.integers(len(self.shoppers)))]
        self._fraudsters += 1
        t = day_ms + int(rng.integers(0, DAY_MS))
        device, address = f"dev-ato-{self._fraudsters}", f"addr-ato-{self._fraudsters}"
        self._fraud_order(victim.user_id, t, [(i, 1.0) for i in self._pricey(launched, int(rng.integers(1, 4)))],
                          victim.cards[0], device, address, victim.addresses[0], victim.email,
                          f"185.{rng.integers(0, 250)}.{rng.integers(0, 250)}.{rng.integers(1, 255)}",
                          "account_takeover", {"avs_match": 1.0, "cvv_match": float(rng.random() < 0.9),
                                               "ip_distance_km": round(float(rng.exponential(1500)), 1)})

    def _ring(self, day: int, day_ms: int, launched: np.ndarray) -> None:
        """Several accounts sharing devices and drop addresses, each ordering over some days."""
        rng = self.rng
        self._fraudsters += 1
        ring = self._fraudsters
        devices = [f"dev-ring{ring}-{k}" for k in range(int(rng.integers(1, 3)))]
        drops = [f"addr-ring{ring}-{k}" for k in range(int(rng.integers(1, 3)))]
        for member in range(int(rng.integers(3, 7))):
            user = f"ring{ring}-m{member}"
            card = f"card-ring{ring}-{member}"
            for _ in range(int(rng.integers(1, 4))):
                t = day_ms + int(rng.uniform(0, 5) * DAY_MS)
                self._fraud_order(user, t, [(i, 1.0) for i in self._pricey(launched, int(rng.integers(1, 3)))], card,
                                  devices[int(rng.integers(len(devices)))], drops[int(rng.integers(len(drops)))],
                                  f"addr-bill-{user}", f"{user}@example.net", f"10.99.{ring % 250}.{member + 1}",
                                  "ring", {"avs_match": float(rng.random() < 0.5), "cvv_match": 1.0,
                                           "ip_distance_km": round(float(rng.exponential(300)), 1)})
