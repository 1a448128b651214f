"""The simulator's fraud: card-testing bots, account takeovers, rings and, from a chosen day, the
reseller wave (a tactic no model has seen). Each attack places its orders through a session like
any shopper's (a landing, views, the cart, the checkout page, the form), and 90% of its orders
are charged back 14 to 60 days later. A part of Simulation (world.py), kept here."""
from __future__ import annotations

import numpy as np

from .population import LOCATIONS

DAY_MS = 86_400_000
CHECKOUT_PAGE = "checkout"  # context["page"] of the page_view that opens checkout

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


class FraudPatterns:
    """Simulation's fraud methods (they use its streams, catalogue, market and events)."""

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
