"""A seeded win-back world: shoppers buy for a year, some drift away, and on the decision day the
lapsing ones (bought before, silent for `silent_min_days` to `silent_max_days`) are split at
random, half sent a coupon and half held out; the next `window_days` are then played out twice
from the same random draws, once as if the shopper held the coupon and once as if not, so each
shopper's true uplift is known beside what the experiment shows.

The hidden traits: `activity` and `price_beta` from population.build_shoppers (a purchase-day
rate proportional to activity; price sensitivity), a daily lapse hazard (a little higher for the
price-sensitive, who drift to cheaper shops), a price taste (the price level of what the shopper
picks, lower for the price-sensitive) and, for a few mostly price-insensitive shoppers, an
aversion to being marketed to. What the history shows of them: how often and how recently the
shopper bought, what the baskets cost, and how much of the buying fell in the shop's sale weeks
(the price-sensitive buy more then: 1 + sale_lift * price_beta times as often).

The coupon (`coupon_value` off one order in the window): a shopper still active holding it buys
at (1 + coupon_boost * price_beta) times the usual rate until using it; one who has lapsed comes
back with a chance rising with price_beta and fading with the time since lapsing, and after
using it is active again for a fresh lifetime; an averse shopper ignores it and buys at
`annoyed_rate` of the usual rate (the sleeping dogs). Sure things are the active who buy either
way, lost causes the lapsed and price-insensitive."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from hanzo.server.features.formats import write_catalog, write_records

from .fraud import DAY_MS
from .population import build_shoppers
from .world import HOURLY

COUPON_CODE = "WINBACK"
EXPERIMENT = "winback-coupon"
SALE_PRICE = 0.8  # sale weeks: every product at this share of its list price


@dataclass
class WinbackConfig:
    seed: int = 26
    shoppers: int = 60000
    history_days: int = 365
    window_days: int = 30
    start: str = "2025-01-06"  # a Monday
    silent_min_days: int = 45
    silent_max_days: int = 180
    coupon_value: float = 5.0
    products: int = 400
    buy_per_session: float = 0.1  # purchase-day rate = this * activity (sessions a day)
    sale_lift: float = 0.6
    mean_lifetime_days: float = 250.0
    comeback: float = 0.05  # a lapsed shopper still buys now and then: this share of the old rate
    coupon_boost: float = 0.35
    reactivation_logit: float = -2.5  # at the population's typical price_beta (1.4), lapsed just now
    reactivation_slope: float = 1.2  # per unit of price_beta
    reactivation_fade_days: float = 365.0
    annoyed_rate: float = 0.3
    expected_draws: int = 32  # replays of the window that give each shopper's expected uplift


@dataclass
class Traits:
    user_ids: np.ndarray  # object
    activity: np.ndarray
    price_beta: np.ndarray
    rate: np.ndarray  # purchase days per day while active, outside sales
    hazard: np.ndarray  # daily chance of lapsing
    price_taste: np.ndarray  # log list price the shopper's picks centre on
    averse: np.ndarray  # bool
    join_day: np.ndarray  # int: the first purchase
    lapse_day: np.ndarray  # float: active until then
    second_life: np.ndarray  # days active again after a coupon brings the shopper back


@dataclass
class Products:
    ids: list[str]
    price: np.ndarray  # list prices, ascending
    cost: np.ndarray

    def records(self) -> list[dict]:
        return [{"product_id": p, "title": f"Item {k + 1}", "category": ["general"], "price": float(self.price[k]),
                 "cost": float(self.cost[k])} for k, p in enumerate(self.ids)]


@dataclass
class Orders:
    user: np.ndarray  # shopper index
    day: np.ndarray  # simulation day
    coupon: np.ndarray  # bool: the coupon was used on it
    line_order: np.ndarray  # each line's order index
    product: np.ndarray
    quantity: np.ndarray
    price: np.ndarray  # paid per unit, sale discount included

    def value(self) -> np.ndarray:
        return np.bincount(self.line_order, self.quantity * self.price, minlength=len(self.user))

    def margin(self, cost: np.ndarray) -> np.ndarray:
        gain = self.quantity * (self.price - cost[self.product])
        return np.bincount(self.line_order, gain, minlength=len(self.user))

    def take(self, keep: np.ndarray) -> Orders:
        """The orders where `keep`, their lines renumbered."""
        new_index = np.cumsum(keep) - 1
        lines = keep[self.line_order]
        return Orders(self.user[keep], self.day[keep], self.coupon[keep], new_index[self.line_order[lines]],
                      self.product[lines], self.quantity[lines], self.price[lines])


def concat(parts: list[Orders]) -> Orders:
    offsets = np.cumsum([0] + [len(p.user) for p in parts[:-1]])
    return Orders(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("user", "day", "coupon")),
                  np.concatenate([p.line_order + o for p, o in zip(parts, offsets)]),
                  *(np.concatenate([getattr(p, f) for p in parts]) for f in ("product", "quantity", "price")))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def sale_days(days: np.ndarray) -> np.ndarray:
    """The shop's calendar: the fifth week of every five is a sale week."""
    return (np.asarray(days) // 7) % 5 == 4


def build_products(rng: np.random.Generator, n: int) -> Products:
    price = np.sort(np.round(np.exp(rng.normal(np.log(18.0), 0.7, n)), 0) - 0.01).clip(1.99)
    cost = np.round(price * rng.uniform(0.55, 0.75, n), 2)
    return Products([f"wp{k:04d}" for k in range(n)], price, cost)


def build_traits(rng: np.random.Generator, config: WinbackConfig) -> Traits:
    shoppers = build_shoppers(rng, config.shoppers)
    n = len(shoppers)
    activity = np.array([s.activity for s in shoppers])
    beta = np.array([s.price_beta for s in shoppers])
    hazard = np.exp(0.25 * (beta - 1.4)) * rng.gamma(2.0, 0.5, n) / config.mean_lifetime_days
    join = rng.integers(0, config.history_days - config.silent_min_days, n)
    return Traits(
        user_ids=np.array([s.user_id for s in shoppers], object), activity=activity, price_beta=beta,
        rate=config.buy_per_session * activity, hazard=hazard,
        price_taste=np.log(18.0) - 0.35 * (beta - 1.4) + rng.normal(0.0, 0.3, n),
        # mostly the loyal full-price buyers, who read a discount mail as pestering
        averse=rng.random(n) < sigmoid(-3.0 - 1.5 * (beta - 1.4)),
        join_day=join, lapse_day=join + rng.standard_exponential(n) / hazard,
        second_life=rng.standard_exponential(n) / hazard)


def simulate_history(rng: np.random.Generator, config: WinbackConfig, traits: Traits) -> tuple[np.ndarray, np.ndarray]:
    """(shopper, day) of every purchase day before the decision day, in chunks of shoppers to
    bound the day-by-shopper matrices."""
    days = np.arange(config.history_days)
    on_sale = sale_days(days)
    users, when = [], []
    for lo in range(0, len(traits.rate), 8192):
        rows = slice(lo, lo + 8192)
        active = days[None, :] < traits.lapse_day[rows, None]
        rate = traits.rate[rows, None] * (1 + config.sale_lift * traits.price_beta[rows, None] * on_sale[None, :])
        rate = rate * np.where(active, 1.0, config.comeback)
        buy = rng.random(rate.shape) < -np.expm1(-rate)
        buy &= days[None, :] >= traits.join_day[rows, None]
        buy[np.arange(buy.shape[0]), traits.join_day[rows]] = True
        u, d = np.nonzero(buy)
        users.append(u + lo)
        when.append(d)
    return np.concatenate(users), np.concatenate(when)


def baskets(rng: np.random.Generator, users: np.ndarray, days: np.ndarray, traits: Traits,
            products: Products) -> Orders:
    """One order per (shopper, day): a few lines centred on the shopper's price taste."""
    n_lines = 1 + rng.poisson(0.5, len(users))
    line_order = np.repeat(np.arange(len(users)), n_lines)
    target = traits.price_taste[users[line_order]] + rng.normal(0.0, 0.5, len(line_order))
    pick = np.searchsorted(np.log(products.price), target) + rng.integers(-3, 4, len(line_order))
    pick = pick.clip(0, len(products.ids) - 1)
    quantity = 1.0 + (rng.random(len(line_order)) < 0.12)
    price = np.round(products.price[pick] * np.where(sale_days(days[line_order]), SALE_PRICE, 1.0), 2)
    return Orders(users, days, np.zeros(len(users), bool), line_order, pick, quantity, price)


@dataclass
class Window:
    buy0: np.ndarray  # [rows, days] bool: buys that day without the coupon
    buy1: np.ndarray  # with it
    redeem_day: np.ndarray  # the window day the coupon is used, -1: never


def play_window(u: np.ndarray, config: WinbackConfig, rate: np.ndarray, beta: np.ndarray, active_for: np.ndarray,
                second_life: np.ndarray, react: np.ndarray, averse: np.ndarray, on_sale: np.ndarray) -> Window:
    """Both worlds from the same uniform draws `u` [rows, days]. With the coupon the rate is
    never below the rate without it (never above, for the averse), so a draw that buys in one
    world buys in the other whenever that one's rate is the higher: each shopper's difference
    is the coupon's doing alone. `active_for`: days left before lapsing (<= 0: lapsed)."""
    rows, days = u.shape
    buy0, buy1 = np.zeros((rows, days), bool), np.zeros((rows, days), bool)
    redeem = np.full(rows, -1)
    active_for1 = active_for.astype(float).copy()
    for t in range(days):
        usual = rate * (1 + config.sale_lift * beta * on_sale[t])
        r0 = usual * np.where(t < active_for, 1.0, config.comeback)
        active1 = t < active_for1
        r1 = usual * np.where(active1, 1.0, config.comeback)
        holding = (redeem < 0) & ~averse
        r1 = np.where(holding, np.where(active1, r1 * (1 + config.coupon_boost * beta), r1 + react), r1)
        r1 = np.where(averse, config.annoyed_rate * r1, r1)
        buy0[:, t] = u[:, t] < -np.expm1(-r0)
        buy1[:, t] = u[:, t] < -np.expm1(-r1)
        used = holding & buy1[:, t]
        redeem[used] = t
        # a lapsed shopper the coupon brought back is active again for a lifetime of their own
        revived = used & ~active1
        active_for1[revived] = t + second_life[revived]
    return Window(buy0, buy1, redeem)


def window_inputs(config: WinbackConfig, traits: Traits, rows: np.ndarray, decision: int) -> dict:
    lapsed_for = np.maximum(decision - traits.lapse_day[rows], 0.0)
    chance = sigmoid(config.reactivation_logit + config.reactivation_slope * (traits.price_beta[rows] - 1.4))
    chance = chance * np.exp(-lapsed_for / config.reactivation_fade_days)
    return {"rate": traits.rate[rows], "beta": traits.price_beta[rows],
            "active_for": traits.lapse_day[rows] - decision, "second_life": traits.second_life[rows],
            "react": -np.log1p(-chance) / config.window_days, "averse": traits.averse[rows],
            "on_sale": sale_days(decision + np.arange(config.window_days))}


def expected_uplift(rng: np.random.Generator, config: WinbackConfig, inputs: dict, rows: int) -> np.ndarray:
    """Each shopper's expected extra purchase days from the coupon, over fresh replays of the window."""
    total = np.zeros(rows)
    for _ in range(config.expected_draws):
        played = play_window(rng.random((rows, config.window_days)), config, **inputs)
        total += played.buy1.sum(axis=1) - played.buy0.sum(axis=1)
    return total / max(config.expected_draws, 1)


@dataclass
class WinbackWorld:
    config: WinbackConfig
    products: Products
    traits: Traits
    orders: Orders  # what the shop saw: the history, then the window as each shopper's arm played it
    lapsing: np.ndarray  # the experiment's shoppers (indices)
    treated: np.ndarray  # bool, per lapsing shopper
    truth: dict[str, np.ndarray]  # per lapsing shopper: both worlds' outcomes and the hidden traits
    start_ms: int

    @property
    def decision_day(self) -> int:
        return self.config.history_days

    def date(self, day: int) -> str:
        return str(np.datetime64(self.start_ms // DAY_MS + day, "D"))

    def events(self) -> list[dict]:
        """Every order as the canonical purchase events (one a line) and an order event; an
        order the coupon paid for carries the code in its context and the amount paid."""
        o, clock = self.orders, np.random.default_rng([self.config.seed, 8])
        stamps = (self.start_ms + o.day * DAY_MS + clock.choice(24, len(o.day), p=HOURLY) * 3_600_000
                  + clock.integers(0, 3_600_000, len(o.day)))
        starts = np.searchsorted(o.line_order, np.arange(len(o.day) + 1))
        value = o.value()
        events: list[dict] = []
        for k in np.argsort(stamps, kind="stable").tolist():
            user, ts = str(self.traits.user_ids[o.user[k]]), int(stamps[k])
            order_id, session = f"wo{k:07d}", f"ws{k:07d}"
            items = [{"product_id": self.products.ids[o.product[j]], "quantity": float(o.quantity[j]),
                      "price": float(o.price[j])} for j in range(starts[k], starts[k + 1])]
            for item in items:
                events.append({"event_type": "purchase", "timestamp": ts, "user_id": user, "session_id": session,
                               "payload": {**item, "amount": round(item["price"] * item["quantity"], 2),
                                           "order_id": order_id}, "context": {}})
            paid, context = round(float(value[k]), 2), {}
            if o.coupon[k]:
                paid = round(max(paid - self.config.coupon_value, 0.0), 2)
                context = {"coupon": COUPON_CODE, "coupon_value": f"{self.config.coupon_value:.2f}"}
            events.append({"event_type": "order", "timestamp": ts, "user_id": user, "session_id": session,
                           "payload": {"order_id": order_id, "amount": paid, "currency": "USD", "items": items},
                           "context": context})
        for n, event in enumerate(events):
            event["event_id"] = f"wb-{n:08d}"
        return events

    def experiment(self) -> dict:
        """What the shop's campaign tool knows: who was assigned to which arm, and when."""
        users = self.traits.user_ids[self.lapsing]
        return {"experiment": EXPERIMENT, "decision_date": self.date(self.decision_day),
                "window_days": self.config.window_days, "coupon_code": COUPON_CODE,
                "coupon_value": self.config.coupon_value,
                "arms": {str(u): "coupon" if t else "control" for u, t in zip(users, self.treated)}}

    def write(self, out: Path) -> None:
        """out/events.jsonl.gz, out/catalog.jsonl (list prices and costs), out/experiment.json
        and out/truth.json (per experiment shopper, column by column)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_catalog(out / "catalog.jsonl", self.products.records())
        write_records(out / "events.jsonl.gz", self.events())
        (out / "experiment.json").write_text(json.dumps(self.experiment(), indent=1))
        columns = {"user_id": self.traits.user_ids[self.lapsing].tolist(), "treated": self.treated.tolist(),
                   **{k: v.tolist() for k, v in self.truth.items()}}
        (out / "truth.json").write_text(json.dumps({"config": asdict(self.config), "shoppers": columns}))


def simulate_winback(config: WinbackConfig) -> WinbackWorld:
    """The world played out; every part draws from its own stream of the seed, so changing one
    (more replays for the expected uplift, say) leaves the others as they were."""
    streams = [np.random.default_rng([config.seed, k]) for k in range(8)]
    traits = build_traits(streams[0], config)
    products = build_products(streams[1], config.products)
    users, days = simulate_history(streams[2], config, traits)
    history = baskets(streams[3], users, days, traits, products)
    decision = config.history_days
    last = np.full(len(traits.rate), -1)
    np.maximum.at(last, users, days)
    silent = decision - last
    lapsing = np.flatnonzero((silent >= config.silent_min_days) & (silent <= config.silent_max_days))
    treated = np.zeros(len(lapsing), bool)
    treated[streams[4].permutation(len(lapsing))[: len(lapsing) // 2]] = True
    inputs = window_inputs(config, traits, lapsing, decision)
    played = play_window(streams[5].random((len(lapsing), config.window_days)), config, **inputs)
    row, t = np.nonzero(played.buy0 | played.buy1)
    # one basket per day either world buys, the same basket in both
    window = baskets(streams[6], lapsing[row], decision + t, traits, products)
    value, margin = window.value(), window.margin(products.cost)
    in0, in1 = played.buy0[row, t], played.buy1[row, t]

    def per_shopper(x: np.ndarray) -> np.ndarray:
        return np.bincount(row, weights=x, minlength=len(lapsing))

    redeems = played.redeem_day >= 0
    truth = {
        "purchases_coupon": played.buy1.sum(axis=1), "purchases_control": played.buy0.sum(axis=1),
        "value_coupon": per_shopper(value * in1), "value_control": per_shopper(value * in0),
        "margin_coupon": per_shopper(margin * in1), "margin_control": per_shopper(margin * in0),
        "redeems": redeems, "coupon_cost": redeems * config.coupon_value,
        "expected_uplift": expected_uplift(streams[7], config, inputs, len(lapsing)),
        "active_at_decision": inputs["active_for"] > 0, "averse": inputs["averse"],
        "price_beta": inputs["beta"], "activity": traits.activity[lapsing], "lapse_hazard": traits.hazard[lapsing]}
    window.coupon = treated[row] & (t == played.redeem_day[row])
    seen = window.take(np.where(treated[row], in1, in0))
    start_ms = int(datetime.fromisoformat(config.start).replace(tzinfo=timezone.utc).timestamp() * 1000)  # noqa: UP017
    return WinbackWorld(config, products, traits, concat([history, seen]), lapsing, treated, truth, start_ms)
