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
from .market import LOSS_AVERSION, REFERENCE_HALF_LIFE_DAYS, Market
from .population import LOCATIONS, Shopper, build_shoppers, drift
from .search import EXAMINE_ETA, SearchEngine, examine_probability

DAY_MS = 86_400_000
# Share of the day's sessions that start in each hour (evenings busiest).
HOURLY = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 3.5, 4, 3.5, 3.5, 3.5, 4, 4.5, 5.5, 6.5, 7,
                   6, 4, 2], dtype=float)
HOURLY /= HOURLY.sum()
WEEKDAY = np.array([1.0, 0.95, 0.95, 1.0, 1.1, 1.25, 1.2])  # Monday first

CHECKOUT_PAGE = "checkout"  # context["page"] of the page_view that opens checkout


def is_checkout_page(event: dict) -> bool:
    """Whether an event is the page_view that opens checkout (page in context, or in payload)."""
    return event["event_type"] == "page_view" and CHECKOUT_PAGE in (
        (event.get("context") or {}).get("page"), (event.get("payload") or {}).get("page"))


# Seconds from the checkout page_view to the order, (least, most), by who fills the form. Honest
# shoppers: lognormal around 70 s, returning ones with saved details 8-22 s.
FORM_FILL_SECONDS = {"legit": (8.0, 600.0), "card_testing": (2.0, 10.0), "account_takeover": (20.0, 60.0),
                     "ring": (30.0, 90.0), "reseller": (5.0, 20.0)}
# Attacks a day per 2000 shoppers at fraud_level 1. A card-testing attack is 4-9 orders, a takeover
# 1-4 (one per victim), a ring 3-18: about 1 fraud order a day, 0.4-0.5% of orders (90% charged back).
FRAUD_ATTACKS_PER_DAY = {"card_testing": 0.06, "account_takeover": 0.15, "ring": 0.035}
# How a fraudster moves through the shop: (mean, least) milliseconds before each product view,
# before each add_to_cart, and from the cart to the checkout page; then how many products it views.
FRAUD_PACE = {
    "card_testing": ((2_500, 500), (2_000, 500), (2_000, 500), (0, 3)),  # a script
    "account_takeover": ((30_000, 3_000), (15_000, 2_000), (40_000, 5_000), (1, 6)),  # a human in a hurry
    "ring": ((35_000, 1_000), (20_000, 1_000), (60_000, 5_000), (2, 10)),  # like any shopper
    "reseller": ((4_000, 500), (3_000, 500), (5_000, 1_000), (0, 2)),  # a bot filling a big basket
}
# The reseller wave (SimulationConfig.reseller_from_day): orders a day per 2000 shoppers, each a
# fresh account filling a basket of many different cheap products shipped to one of a few drops.
RESELLER_ORDERS_PER_DAY = 12.0
RESELLER_BASKET = (10, 18)


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


class Simulation:
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
        launched = self.catalog.launch_day <= day
        weekday = WEEKDAY[(datetime.fromtimestamp(day_ms / 1000, tz=timezone.utc).weekday())]  # noqa: UP017
        return day_ms, launched, weekday

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

    # ------------------------------------------------------------------ fraud

    def _fraud(self, day: int, day_ms: int, launched: np.ndarray) -> None:
        level = self.config.fraud_level * len(self.shoppers) / 2000
        f = self.fraud_rng
        for _ in range(f.poisson(FRAUD_ATTACKS_PER_DAY["card_testing"] * level)):
            self._card_testing(day_ms, launched)
        for _ in range(f.poisson(FRAUD_ATTACKS_PER_DAY["account_takeover"] * level)):
            self._account_takeover(day, day_ms, launched)
        for _ in range(f.poisson(FRAUD_ATTACKS_PER_DAY["ring"] * level)):
            self._ring(day, day_ms, launched)
        if 0 <= self.config.reseller_from_day <= day:
            for _ in range(self.tactic_rng.poisson(RESELLER_ORDERS_PER_DAY * len(self.shoppers) / 2000)):
                self._reseller(day, day_ms, launched)

    def _later(self, day: int, day_ms: int, most_days: float) -> int:
        """A moment in the next `most_days` days, within the simulation."""
        return day_ms + int(self.fraud_rng.uniform(0, min(most_days, self.config.days - day)) * DAY_MS)

    def _browse_alongside(self, buys: list[int], k: int, launched: np.ndarray) -> list[int]:
        """k products someone after `buys` would look at too: the same subcategories first."""
        if k <= 0:
            return []
        catalog = self.catalog
        near = np.flatnonzero(launched & np.isin(catalog.sub, catalog.sub[buys]))
        near = near[~np.isin(near, buys)]
        if len(near) < k:
            rest = np.flatnonzero(launched)
            near = np.concatenate([near, rest[~np.isin(rest, np.concatenate([near, buys]))]])
        return [int(i) for i in self.fraud_rng.choice(near, size=min(k, len(near)), replace=False)]

    def _fraud_visit(self, user: str, device: str, t: int, buys: list[int], pattern: str,
                     launched: np.ndarray) -> tuple[str, int, int]:
        """A fraudster's session up to the order: it lands, views products (what it buys among them
        when it views enough), puts what it buys in the cart, opens checkout and fills the form.
        Returns the session, when checkout opened and when the order goes in."""
        f, catalog, market = self.fraud_rng, self.catalog, self.market
        (view_mean, view_min), (cart_mean, cart_min), (checkout_mean, checkout_min), (least, most) = \
            FRAUD_PACE[pattern]
        n_views = int(f.integers(least, most + 1))
        self._sessions += 1
        session = f"s{self._sessions:07d}"
        context = {"device": device}
        self.emit(t, "page_view", user, session, {}, context)
        seen = buys[:n_views]
        viewed = seen + self._browse_alongside(buys, n_views - len(seen), launched)
        f.shuffle(viewed)
        to_cart = [i for i in buys if i not in seen]  # bought without a view: straight into the cart
        for i in viewed:
            t += int(f.exponential(view_mean)) + view_min
            self.emit(t, "product_view", user, session, {"product_id": catalog.ids[i],
                                                         "price": float(market.price[i])}, context)
            self.popularity[i] += 1
            if i in buys:
                to_cart.append(i)
        for i in to_cart:
            t += int(f.exponential(cart_mean)) + cart_min
            self.emit(t, "add_to_cart", user, session, {"product_id": catalog.ids[i], "quantity": 1.0,
                                                        "price": float(market.price[i])}, context)
        t += int(f.exponential(checkout_mean)) + checkout_min
        self.emit(t, "page_view", user, session, {}, {**context, "page": CHECKOUT_PAGE})
        low, high = FORM_FILL_SECONDS[pattern]
        return session, t, t + int(f.uniform(low, high) * 1000)

    def _fraud_order(self, user: str, t: int, buys: list[int], card: str, device: str, address: str,
                     billing: str, email: str, ip: str, pattern: str, actor: str, signals: dict,
                     launched: np.ndarray) -> int:
        """A fraudulent session and its order; returns when the order went in."""
        catalog, market, f = self.catalog, self.market, self.fraud_rng
        session, _, t = self._fraud_visit(user, device, t, buys, pattern, launched)
        self._orders += 1
        order_id = f"o{self._orders:07d}"
        location = LOCATIONS[int(f.integers(len(LOCATIONS)))]
        lines = []
        for i in buys:
            price = float(market.price[i])
            self._carted_regardless[i] += 1.0
            if market.available(location, i, 1.0):
                market.sell(location, i, 1.0)
            self.emit(t, "purchase", user, session, {"product_id": catalog.ids[i], "quantity": 1.0,
                                                     "price": price, "amount": round(price, 2),
                                                     "order_id": order_id}, {"device": device})
            lines.append({"product_id": catalog.ids[i], "quantity": 1.0, "price": price})
        amount = round(sum(line["quantity"] * line["price"] for line in lines), 2)
        self.emit(t, "order", user, session, {
            "order_id": order_id, "amount": amount, "currency": "USD", "card_id": card, "device_id": device,
            "ip": ip, "email": email, "shipping_address_id": address, "billing_address_id": billing, "items": lines,
            "location": location, "signals": signals}, {"device": device})
        self.truth.fraud_orders[order_id] = pattern
        self.truth.fraud_actors[order_id] = actor
        if f.random() < 0.9:
            self._chargeback(order_id, t, "fraud")
        return t

    def _pricey(self, launched: np.ndarray, k: int) -> list[int]:
        catalog = self.catalog
        pool = np.flatnonzero(launched & (catalog.base_price > np.quantile(catalog.base_price, 0.7)))
        return [int(i) for i in self.fraud_rng.choice(pool, size=min(k, len(pool)), replace=False)]

    def _cheap(self, launched: np.ndarray) -> int:
        pool = np.flatnonzero(launched & (self.catalog.base_price < np.quantile(self.catalog.base_price, 0.2)))
        return int(self.fraud_rng.choice(pool))

    def _ip(self) -> str:
        f = self.fraud_rng
        return f"10.{f.integers(1, 250)}.{f.integers(0, 250)}.{f.integers(1, 255)}"

    def _card_testing(self, day_ms: int, launched: np.ndarray) -> None:
        """A new account's script tries stolen cards on one cheap product in quick succession, a
        session each, then spends on the card that worked."""
        f = self.fraud_rng
        self._attacks += 1
        actor = f"card_testing-{self._attacks}"
        user = self._new_id()
        device, address = f"dev-{user}-0", f"addr-{user}-0"
        email = f"user{user[1:]}@mailinator.example" if f.random() < 0.5 else f"user{user[1:]}@example.com"
        t = day_ms + int(f.integers(0, DAY_MS - 3_600_000))
        cards = [f"card-{user}-{k}" for k in range(int(f.integers(3, 9)))]
        ip = self._ip()
        cheap = self._cheap(launched)
        for card in cards:
            t += int(f.exponential(120_000)) + 5000
            t = self._fraud_order(user, t, [cheap], card, device, address, address, email, ip, "card_testing", actor,
                                  {"avs_match": float(f.random() < 0.3), "cvv_match": float(f.random() < 0.6),
                                   "ip_distance_km": round(float(f.exponential(800)), 1)}, launched)
        t += int(f.exponential(600_000))
        self._fraud_order(user, t, self._pricey(launched, 2), cards[-1], device, address, address, email, ip,
                          "card_testing", actor,
                          {"avs_match": 0.0, "cvv_match": 1.0, "ip_distance_km": round(float(f.exponential(800)), 1)},
                          launched)

    def _account_takeover(self, day: int, day_ms: int, launched: np.ndarray) -> None:
        """Stolen logins: a real shopper's account and card, the fraudster's device and a drop
        address. Some fraudsters work through several victims from one device over a few days,
        and some come back with a device seen in an earlier takeover."""
        f = self.fraud_rng
        self._attacks += 1
        actor = f"account_takeover-{self._attacks}"
        if self._ato_devices and f.random() < 0.25:
            device = self._ato_devices[int(f.integers(len(self._ato_devices)))]
        else:
            device = f"dev-{self._new_id()}-0"
            self._ato_devices.append(device)
            self._warm_up(device, day_ms, launched)
        drop = f"addr-{self._new_id()}-0"
        n_victims = 1 if f.random() < 0.6 else int(f.integers(2, 5))
        present = [s for s in self.shoppers if s.joined_day <= day]  # accounts that exist by now
        victims = f.choice(len(present), size=min(n_victims, len(present)), replace=False)
        for v in victims:
            victim = present[int(v)]
            t = self._later(day, day_ms, 3)
            address = drop if f.random() < 0.6 else f"addr-{self._new_id()}-0"
            # Most come from far away; a careful one through a proxy near the victim.
            distance = f.exponential(30) if f.random() < 0.3 else f.exponential(1500)
            self._fraud_order(victim.user_id, t, self._pricey(launched, int(f.integers(1, 4))),
                              victim.cards[int(f.integers(len(victim.cards)))], device, address,
                              victim.addresses[0], victim.email, self._ip(), "account_takeover", actor,
                              {"avs_match": 1.0, "cvv_match": float(f.random() < 0.9),
                               "ip_distance_km": round(float(distance), 1)}, launched)

    def _warm_up(self, device: str, day_ms: int, launched: np.ndarray) -> None:
        """Careful fraudsters age a device before using it: a visit or two, signed out, some
        days ahead, so it does not look new on the day."""
        f, catalog, market = self.fraud_rng, self.catalog, self.market
        if f.random() >= 0.4:
            return
        for _ in range(int(f.integers(1, 3))):
            t = day_ms - int(f.uniform(1, 10) * DAY_MS)
            if t < self.start_ms:
                continue
            self._sessions += 1
            session = f"s{self._sessions:07d}"
            self.emit(t, "page_view", None, session, {}, {"device": device})
            for i in f.choice(np.flatnonzero(launched), size=int(f.integers(1, 4)), replace=False):
                t += int(f.exponential(20_000)) + 3000
                self.emit(t, "product_view", None, session, {"product_id": catalog.ids[int(i)],
                                                             "price": float(market.price[int(i)])}, {"device": device})

    def _reseller(self, day: int, day_ms: int, launched: np.ndarray) -> None:
        """The new tactic: a fresh account, card and device fill a basket of many different cheap
        products (resold in bulk), shipped to one of the wave's few drops; the card passes AVS
        and CVV. Its own stream draws the account and basket, the fraud stream the session."""
        g = self.tactic_rng
        if not self._reseller_drops:
            self._reseller_drops = [f"addr-{self._new_id()}-0" for _ in range(3)]
        self._attacks += 1
        user = self._new_id()
        pool = np.flatnonzero(launched & (self.catalog.base_price < np.quantile(self.catalog.base_price, 0.5)))
        basket = [int(i) for i in g.choice(pool, size=min(int(g.integers(*RESELLER_BASKET)), len(pool)),
                                           replace=False)]
        t = day_ms + int(g.uniform(0, DAY_MS))
        self._fraud_order(user, t, basket, f"card-{user}-0", f"dev-{user}-0",
                          self._reseller_drops[int(g.integers(len(self._reseller_drops)))], f"addr-{user}-0",
                          f"user{user[1:]}@example.com", f"10.77.{g.integers(0, 250)}.{g.integers(1, 250)}",
                          "reseller", f"reseller-{self._attacks}",
                          {"avs_match": 1.0, "cvv_match": 1.0, "ip_distance_km": round(float(g.exponential(50)), 1)},
                          launched)

    def _ring(self, day: int, day_ms: int, launched: np.ndarray) -> None:
        """Several new accounts sharing devices and drop addresses (now and then a drop an earlier
        ring used), each ordering over some days."""
        f = self.fraud_rng
        self._attacks += 1
        actor = f"ring-{self._attacks}"
        devices = [f"dev-{self._new_id()}-0" for _ in range(int(f.integers(1, 3)))]
        for device in devices:
            self._warm_up(device, day_ms, launched)
        drops = [f"addr-{self._new_id()}-0" for _ in range(int(f.integers(1, 3)))]
        if self._ring_drops and f.random() < 0.3:
            drops[-1] = self._ring_drops[int(f.integers(len(self._ring_drops)))]
        self._ring_drops.extend(d for d in drops if d not in self._ring_drops)
        prefix = f"10.{f.integers(1, 250)}.{f.integers(0, 250)}"
        for member in range(int(f.integers(3, 7))):
            user = self._new_id()
            card = f"card-{user}-0"
            for _ in range(int(f.integers(1, 4))):
                t = self._later(day, day_ms, 5)
                self._fraud_order(user, t, self._pricey(launched, int(f.integers(1, 3))), card,
                                  devices[int(f.integers(len(devices)))], drops[int(f.integers(len(drops)))],
                                  f"addr-{user}-0", f"user{user[1:]}@example.com", f"{prefix}.{member + 1}",
                                  "ring", actor, {"avs_match": float(f.random() < 0.5), "cvv_match": 1.0,
                                                  "ip_distance_km": round(float(f.exponential(300)), 1)}, launched)
