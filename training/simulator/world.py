"""The simulation: day by day, shoppers run sessions (browse, search, cart, buy, come back for
what runs out), prices move, stock runs down and is restocked, fraudsters place orders, and
chargebacks arrive weeks later. Every happening is an event in the canonical format.

Every checkout, honest or not, is a session: a landing page_view, browsing, add_to_cart, a
page_view with context {"page": "checkout"} when checkout starts (the canonical payload, and
hanzo.v1.EventPayload, have no page field; context is the string map that carries it), then the
purchases and the order together once the form is filled. What tells fraud apart are tendencies,
not tells: card-testing bots barely browse and fill the form in seconds, account takeovers browse
a little and ship to a new address from a new device, rings browse like anyone; honest shoppers
now and then order from a new device, to a new address, while travelling, or spend big, and new
customers (joining_share) arrive with accounts and devices as new as a fraudster's."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np

from .catalog import DIM, Catalog, build_catalog
from .fraud import CHECKOUT_PAGE, DAY_MS, FORM_FILL_SECONDS, FraudPatterns
from .market import LOSS_AVERSION, REFERENCE_HALF_LIFE_DAYS, Market
from .population import LOCATIONS, Shopper, build_shoppers, drift
from .search import EXAMINE_ETA, SearchEngine, examine_probability

# Share of the day's sessions that start in each hour (evenings busiest).
HOURLY = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 3.5, 4, 3.5, 3.5, 3.5, 4, 4.5, 5.5, 6.5, 7,
                   6, 4, 2], dtype=float)
HOURLY /= HOURLY.sum()
WEEKDAY = np.array([1.0, 0.95, 0.95, 1.0, 1.1, 1.25, 1.2])  # Monday first


def is_checkout_page(event: dict) -> bool:
    """Whether an event is the page_view that opens checkout (page in context, or in payload)."""
    return event["event_type"] == "page_view" and CHECKOUT_PAGE in (
        (event.get("context") or {}).get("page"), (event.get("payload") or {}).get("page"))




@dataclass
class SimulationConfig:
    seed: int = 7
    users: int = 2000
    products: int = 600
    days: int = 30
    start: str = "2026-01-05"  # a Monday
    anonymous_share: float = 0.15
    # Scales every fraud pattern's rate (FRAUD_ATTACKS_PER_DAY, per 2000 shoppers). At 1 about 0.4% of
    # orders are fraud: 15-40 in the default 30 days (attacks are few and lumpy), ~190 of ~48k orders in
    # 90 days of 5000 shoppers. More to train on: more shoppers or days, or a higher level (2 gives ~0.8%).
    fraud_level: float = 1.0
    new_product_share: float = 0.05
    # Shoppers who first arrive during the run (on a uniform day), the rest shop from day 0: a
    # shop's new customers, whose accounts and devices are as new as a fraudster's. 0 keeps
    # earlier seeded runs as they were.
    joining_share: float = 0.0
    # Chance a day that a product not already under a price test starts one (a step of -20% to
    # +20% for 3-10 days): what lets a demand model read elasticities from the log.
    price_experiment_rate: float = 0.02
    # A fraud tactic no model has seen (the reseller wave), from this day on; -1: never. It draws
    # from its own stream, so the days before it are as without it.
    reseller_from_day: int = -1
    # A fad: from this day on (-1: never) a share of the products appeals more to everyone, until
    # end_fad() is called (a taste that shifts back). Its products come from their own stream.
    fad_from_day: int = -1
    fad_share: float = 0.1
    fad_boost: float = 1.5


@dataclass
class Truth:
    """What the simulation knows and a model can only estimate."""
    config: dict
    fraud_orders: dict[str, str] = field(default_factory=dict)  # order_id -> pattern
    fraud_actors: dict[str, str] = field(default_factory=dict)  # order_id -> the attack (one crew) that placed it
    chargebacks: dict[str, str] = field(default_factory=dict)  # order_id -> "fraud" | "friendly"
    examine_eta: float = EXAMINE_ETA
    loss_aversion: float = LOSS_AVERSION
    reference_half_life_days: float = REFERENCE_HALF_LIFE_DAYS
    price_beta: dict[str, float] = field(default_factory=dict)  # user -> price sensitivity
    # product -> arc elasticity of its units around its base price (see Simulation.true_elasticities)
    price_elasticity: dict[str, float] = field(default_factory=dict)
    # the same once the shoppers' reference price has caught up (no loss aversion left)
    price_elasticity_long_run: dict[str, float] = field(default_factory=dict)


class Simulation(FraudPatterns):
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.catalog: Catalog = build_catalog(self.rng, config.products, config.days, config.new_product_share)
        self.shoppers: list[Shopper] = build_shoppers(self.rng, config.users)
        if config.joining_share > 0:  # its own stream: the rest of the run draws as before
            arrivals = np.random.default_rng([config.seed, 1])
            for shopper in self.shoppers:
                if arrivals.random() < config.joining_share:
                    shopper.joined_day = int(arrivals.integers(0, max(config.days, 1)))
        self.market = Market(self.rng, self.catalog, config.price_experiment_rate)
        self.search = SearchEngine(self.rng, self.catalog)
        self.start_ms = int(datetime.fromisoformat(config.start).replace(
            tzinfo=timezone.utc).timestamp() * 1000)  # noqa: UP017 (python 3.10)
        self.events: list[dict] = []
        self.truth = Truth(config=asdict(config), price_beta={s.user_id: s.price_beta for s in self.shoppers})
        self.popularity = np.ones(len(self.catalog))
        # units carted per product after weighing the price among others (browsing), by a
        # shopper set on it who balks only at a price above the usual (a repeat need, a
        # splurge), and regardless of price (a fraudster): the true elasticity mixes them
        self._carted_on_price = np.zeros(len(self.catalog))
        self._carted_rebuy = np.zeros(len(self.catalog))
        self._carted_regardless = np.zeros(len(self.catalog))
        self._ids = 0
        self._sessions = 0
        self._orders = 0
        # Fraud draws from its own stream, so fraud_level leaves honest behaviour alone (but for stock
        # it buys); the honest details added to checkouts (form filling, risky traits) have theirs.
        self.fraud_rng = np.random.default_rng([config.seed, 1])
        self.detail_rng = np.random.default_rng([config.seed, 2])
        self._accounts = len(self.shoppers)  # fraudsters' accounts and gear are numbered after the shoppers
        self._attacks = 0
        self._ordered: dict[str, int] = {}  # user -> honest orders so far
        self._ato_devices: list[str] = []
        self._ring_drops: list[str] = []
        self._reseller_drops: list[str] = []
        self.fad_items: np.ndarray | None = None  # the fad's products while it lasts
        self.tactic_rng = np.random.default_rng([config.seed, 7])
        self._households()

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

    def _households(self) -> None:
        """Some shoppers share a device with another (a family tablet): an honest device with
        several users, as a ring's is."""
        d = self.detail_rng
        n = len(self.shoppers)
        if n < 2:
            return
        for u in np.flatnonzero(d.random(n) < 0.03):
            other = int(d.integers(n - 1))
            other += other >= u
            self.shoppers[int(u)].devices.append(self.shoppers[other].devices[0])

    def _new_id(self) -> str:
        """A fresh account number past the shoppers', for a fraudster's account, card, device or address."""
        self._accounts += 1
        return f"u{self._accounts - 1:05d}"

    def _stock_total(self, i: int) -> float:
        return float(sum(self.market.stock[loc][i] for loc in LOCATIONS))

    # ------------------------------------------------------------------ the run

    def run(self) -> Simulation:
        for day in range(self.config.days):
            self._day(day)
        self.events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
        self.truth.price_elasticity = self.true_elasticities()
        self.truth.price_elasticity_long_run = self.true_elasticities(loss_aversion=0.0)
        return self

    def true_elasticities(self, step: float = 0.1, loss_aversion: float = LOSS_AVERSION) -> dict[str, float]:
        """What a price change does to each product's units, from the simulation's own demand:
        the arc elasticity of the chance a viewer carts it between 10% below and 10% above its
        base price (the reference price at the base, shoppers as the run leaves them, each
        weighted by how likely browsing shows them the product: exp of its appeal), mixed by
        the shares of its units with the response of shoppers set on it (repeat needs,
        splurges: they balk above the usual price only) and fraud's (none). With loss_aversion 0
        it is the long-run response: the shoppers' reference price has caught up with the new
        price."""
        catalog, market = self.catalog, self.market
        tastes = np.stack([s.taste for s in self.shoppers])
        betas = np.array([s.price_beta for s in self.shoppers])
        appeal = catalog.vectors @ tastes.T / np.sqrt(DIM) * 2.0 + catalog.quality[:, None]  # [products, shoppers]
        weights = np.exp(appeal)
        expected = []
        for factor in (1 - step, 1 + step):
            relative = catalog.base_price * factor / market.typical
            utility = -1.2 + appeal - betas[None, :] * (relative[:, None] + loss_aversion * max(0.0, factor - 1.0))
            expected.append((weights / (1 + np.exp(-utility))).sum(axis=1))
        arc = np.log(1 + step) - np.log(1 - step)
        choice = (np.log(expected[1]) - np.log(expected[0])) / arc
        # a set-on-it shopper: no gain below the usual price, market.rebuy_factor above it
        over = step * catalog.base_price / market.typical
        rebuy = np.log(np.exp(-betas[None, :] * (over[:, None] + loss_aversion * step)).mean(axis=1)) / arc
        total = self._carted_on_price + self._carted_rebuy + self._carted_regardless
        safe = np.maximum(total, 1e-9)
        on_price = np.where(total > 0, self._carted_on_price / safe, 1.0)
        on_rebuy = np.where(total > 0, self._carted_rebuy / safe, 0.0)
        mixed = choice * on_price + rebuy * on_rebuy
        return {catalog.ids[i]: round(float(mixed[i]), 4) for i in range(len(catalog))}

    def _day(self, day: int) -> None:
        day_ms, launched, weekday = self._day_opens(day)
        rng = self.rng
        for shopper in self.shoppers:
            if shopper.joined_day > day:
                continue
            drift(rng, shopper)
            due = [p for p, when in shopper.needs.items() if when <= day]
            sessions = rng.poisson(shopper.activity * weekday) + (1 if due and rng.random() < 0.7 else 0)
            for _ in range(sessions):
                start = day_ms + int(rng.choice(24, p=HOURLY)) * 3_600_000 + int(rng.integers(0, 3_600_000))
                self._session(shopper, start, launched, due)
                due = []
        self._day_closes(day, day_ms, launched)

    def _day_opens(self, day: int) -> tuple[int, np.ndarray, float]:
        """Products launched and prices moved; the day's start, what is on sale, and its weekday's weight."""
        day_ms = self.start_ms + day * DAY_MS
        rng = self.rng
        for i in np.flatnonzero(self.catalog.launch_day == day):
            if day > 0:
                record = self.catalog.record(int(i), self.market.price[i], self._stock_total(int(i)))
                self.emit(day_ms + int(rng.integers(0, 3_600_000)), "catalog_update", None, "", record)
        for _, i, price in self.market.start_day(day):
            self.emit(day_ms + int(rng.integers(0, 3_600_000)), "price_change", None, "",
                      {"product_id": self.catalog.ids[i], "price": price})
        if day == self.config.fad_from_day:
            self.start_fad()
        launched = self.catalog.launch_day <= day
        weekday = WEEKDAY[(datetime.fromtimestamp(day_ms / 1000, tz=timezone.utc).weekday())]  # noqa: UP017
        return day_ms, launched, weekday

    def start_fad(self) -> None:
        if self.fad_items is None:
            n = max(1, int(self.config.fad_share * len(self.catalog)))
            self.fad_items = np.random.default_rng([self.config.seed, 9]).choice(len(self.catalog), n, replace=False)
            self.catalog.quality[self.fad_items] += self.config.fad_boost

    def end_fad(self, backlash: float = 0.0) -> None:
        """Tastes shift: the fad's products appeal as they did before it, less `backlash` (out
        of fashion now)."""
        if self.fad_items is not None:
            self.catalog.quality[self.fad_items] -= self.config.fad_boost + backlash
            self.fad_items = None

    def _day_closes(self, day: int, day_ms: int, launched: np.ndarray) -> None:
        """The day's fraud, the warehouses' counts, popularity fading."""
        self._fraud(day, day_ms, launched)
        for loc, i, level in self.market.end_day(day):
            self.emit(day_ms + DAY_MS - 1 - int(self.rng.integers(0, 3_600_000)), "stock_update", None, "",
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
        d = self.detail_rng
        # A new phone or laptop, a borrowed one, a cleared browser or a private window: device
        # ids churn, so a device first seen today is common among honest orders too.
        if d.random() < 0.06:
            device = f"dev-{shopper.user_id}-{len(shopper.devices)}"
            shopper.devices.append(device)
        context = {"device": device}
        t = start
        self.emit(t, "page_view", user, session, {}, context)
        cart: list[tuple[int, float]] = []
        if d.random() < 0.02:
            t = self._splurge(shopper, user, session, context, t, launched, cart)
        if due:
            # Back for what ran out: straight to the product, usually bought again.
            i = catalog.ids.index(due[0])
            t += int(rng.exponential(20_000)) + 1000
            self.emit(t, "product_view", user, session,
                      {"product_id": catalog.ids[i], "price": float(self.market.price[i])}, context)
            if rng.random() < 0.8 * self.market.rebuy_factor(i, shopper.price_beta):
                cart.append((i, 1.0))
                self._carted_rebuy[i] += 1.0
                t += int(rng.exponential(15_000)) + 1000
                self.emit(t, "add_to_cart", user, session, {"product_id": catalog.ids[i], "quantity": 1.0,
                                                            "price": float(self.market.price[i])}, context)
            shopper.needs.pop(due[0], None)
        viewed: list[int] = []
        t = self._shown(shopper, user, session, context, t, launched, viewed)
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
                self._carted_on_price[i] += quantity
                t += int(rng.exponential(20_000)) + 1000
                self.emit(t, "add_to_cart", user, session, {"product_id": catalog.ids[i], "quantity": quantity,
                                                            "price": float(self.market.price[i])}, context)
        if cart and rng.random() < 0.65:
            t += int(rng.exponential(60_000)) + 5000
            self._checkout(shopper, user, session, device, t, cart)
        elif cart and d.random() < 0.15:  # opens checkout, then leaves
            self.emit(t + int(d.exponential(60_000)) + 5000, "page_view", user, session, {},
                      {**context, "page": CHECKOUT_PAGE})

    def _shown(self, shopper: Shopper, user, session, context, t, launched, viewed: list[int]) -> int:
        """What the shop shows the shopper on landing (closed_loop.py: recommendations, clicked
        into `viewed`); here nothing, and no draw, so a seed's run is what it always was."""
        return t

    def _splurge(self, shopper: Shopper, user, session, context, t, launched, cart) -> int:
        """Now and then an honest shopper goes for something expensive (a gift, a new appliance)."""
        d, catalog = self.detail_rng, self.catalog
        pool = np.flatnonzero(launched & (catalog.base_price > np.quantile(catalog.base_price, 0.8)))
        if not len(pool):
            return t
        weights = np.exp(self._appeal(shopper, pool))
        i = int(d.choice(pool, p=weights / weights.sum()))
        t += int(d.exponential(30_000)) + 1000
        self.emit(t, "product_view", user, session, {"product_id": catalog.ids[i],
                                                     "price": float(self.market.price[i])}, context)
        self.popularity[i] += 1
        if d.random() < 0.6 * self.market.rebuy_factor(i, shopper.price_beta):
            cart.append((i, 1.0))
            self._carted_rebuy[i] += 1.0
            t += int(d.exponential(30_000)) + 1000
            self.emit(t, "add_to_cart", user, session, {"product_id": catalog.ids[i], "quantity": 1.0,
                                                        "price": float(self.market.price[i])}, context)
        return t

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

    def _fill_ms(self, shopper: Shopper, user: str | None) -> int:
        """How long an honest shopper takes from the checkout page to the order."""
        d = self.detail_rng
        if user is not None and self._ordered.get(shopper.user_id) and d.random() < 0.4:
            seconds = np.clip(d.lognormal(np.log(14), 0.25), 8, 22)  # saved details: confirm and pay
        else:
            seconds = np.clip(d.lognormal(np.log(70), 0.5), 25, FORM_FILL_SECONDS["legit"][1])
        return int(seconds * 1000)

    def _checkout(self, shopper: Shopper, user, session, device, t, cart) -> None:
        rng, catalog, market, d = self.rng, self.catalog, self.market, self.detail_rng
        self.emit(t, "page_view", user, session, {}, {"device": device, "page": CHECKOUT_PAGE})
        items = [(i, q) for i, q in cart if market.available(shopper.location, i, q)]
        if not items:
            return
        t += self._fill_ms(shopper, user)
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
        ip = f"{shopper.ip_prefix}.{rng.integers(1, 255)}"
        cvv = float(rng.random() < 0.995)
        distance = float(rng.exponential(15))
        if d.random() < 0.02:  # a gift, a holiday home, a new flat: a shipping address never used
            address = f"addr-{shopper.user_id}-{len(shopper.addresses)}"
            shopper.addresses.append(address)
        if d.random() < 0.03:  # travelling, or behind a VPN: far from home
            ip = f"10.{d.integers(1, 250)}.{d.integers(0, 250)}.{d.integers(1, 255)}"
            distance = float(d.uniform(150, 6000))
        avs = float(d.random() >= 0.02)  # a typo, a recent move
        self.emit(t, "order", shopper.user_id, session, {
            "order_id": order_id, "amount": amount, "currency": "USD", "card_id": card, "device_id": device,
            "ip": ip, "email": shopper.email,
            "shipping_address_id": address, "billing_address_id": shopper.addresses[0], "items": lines,
            "location": shopper.location,
            "signals": {"avs_match": avs, "cvv_match": cvv, "ip_distance_km": round(distance, 1)}}, {"device": device})
        self._ordered[shopper.user_id] = self._ordered.get(shopper.user_id, 0) + 1
        if rng.random() < 0.0015:  # friendly fraud: a real customer disputes a real order
            self._chargeback(order_id, t, "friendly")

    def _chargeback(self, order_id: str, order_ts: int, kind: str) -> None:
        rng = self.fraud_rng if kind == "fraud" else self.rng
        delay = int(rng.uniform(14, 60) * DAY_MS)
        self.emit(order_ts + delay, "chargeback", None, "", {"order_id": order_id})
        self.truth.chargebacks[order_id] = kind
