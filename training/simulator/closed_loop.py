"""The simulator in a closed loop with a shop: shoppers see what the shop recommends when they
land, click by the items' true appeal and the position they are shown in, and buy what they
clicked as they buy what they browse; every event reaches the shop before the next session
that could use it. So a recommender is judged by what shoppers did with its lists, and the
truth (the chance of a click and of a purchase behind every impression) says what it could
have expected.

The shop is anything with `observe(events)` (events reach it, in time order as far as the day's
sessions go: a day's fraud and stock counts arrive late, as they would) and `recommend(user,
session, k, request_id) -> (product ids, version)`: a running Hanzo server (ServerShop), the
popularity baseline (PopularityShop), or the oracle that ranks by the truth (OracleShop, the
ceiling). Sessions run in time order within a day, unlike the open simulation; the shoppers'
own choices draw from the simulation's streams and the recommendation step from one of its
own, so two shops on one seed share every day before the first list is shown."""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .population import Shopper, drift
from .search import examine_probability
from .world import DAY_MS, HOURLY, Simulation, SimulationConfig

# A recommended item is clicked, once examined, with chance sigmoid(appeal - CLICK_BIAS): most
# lists hold few items a shopper wants enough to look at.
CLICK_BIAS = 2.0
CART_BIAS = -1.2  # as a browsed item (world.py): sigmoid(CART_BIAS + appeal + price utility)
CHECKOUT_CHANCE = 0.65  # a session with a cart checks out (world.py)


class Shop(Protocol):
    def observe(self, events: list[dict]) -> None: ...

    def recommend(self, user: str | None, session: str, k: int, request_id: str) -> tuple[list[str], str]: ...


@dataclass
class Impressions:
    """Per list shown: its items' true click and purchase chances summed, and what happened."""
    lists: int = 0
    impressions: int = 0
    clicks: list[int] = field(default_factory=list)  # per list
    purchases: list[int] = field(default_factory=list)
    expected_clicks: list[float] = field(default_factory=list)
    expected_purchases: list[float] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    failures: int = 0  # recommend calls that raised
    shoppers: list[str] = field(default_factory=list)  # per list: who saw it (the truth knows the anonymous too)
    list_versions: list[str] = field(default_factory=list)  # per list: the model version that answered
    times: list[int] = field(default_factory=list)  # per list: when, ms


class ClosedLoopSimulation(Simulation):
    def __init__(self, config: SimulationConfig, k: int = 10, share: float = 0.6) -> None:
        super().__init__(config)
        self.k, self.share = k, share
        self.shop: Shop | None = None  # set before the days that show lists
        self.loop_rng = np.random.default_rng([config.seed, 3])
        self.outcome = Impressions()
        self._pending: list[tuple[int, int, dict]] = []  # events not yet observed, by time
        self._clicked: set[int] | None = None
        self._lists = 0
        self.index_of = {product: i for i, product in enumerate(self.catalog.ids)}
        self.shopper: Shopper | None = None  # the one in session (the oracle knows who is anonymous)
        self.showing = False  # lists shown; events reach the shop either way

    def emit(self, ts: int, kind: str, user: str | None, session: str, payload: dict,
             context: dict | None = None) -> str:
        event_id = super().emit(ts, kind, user, session, payload, context)
        heapq.heappush(self._pending, (int(ts), self._ids, self.events[-1]))
        return event_id

    def flush(self, until_ms: int) -> None:
        """Every event up to `until_ms` to the shop (a later one waits for its time)."""
        ready = []
        while self._pending and self._pending[0][0] <= until_ms:
            ready.append(heapq.heappop(self._pending)[2])
        if ready and self.shop is not None:
            self.shop.observe(ready)

    def run_days(self, first: int, last: int) -> None:
        """Days [first, last): with a shop set, lists are shown and events flow to it."""
        for day in range(first, last):
            self._day(day)
            self.flush(self.start_ms + (day + 1) * DAY_MS - 1)

    def _day(self, day: int) -> None:
        """As Simulation._day, but the day's sessions in time order, each after the events
        before it have reached the shop."""
        day_ms, launched, weekday = self._day_opens(day)
        rng = self.rng
        plan: list[tuple[int, int, Shopper, list[str]]] = []
        for n, shopper in enumerate(self.shoppers):
            if shopper.joined_day > day:
                continue
            drift(rng, shopper)
            due = [p for p, when in shopper.needs.items() if when <= day]
            sessions = rng.poisson(shopper.activity * weekday) + (1 if due and rng.random() < 0.7 else 0)
            for s in range(sessions):
                start = day_ms + int(rng.choice(24, p=HOURLY)) * 3_600_000 + int(rng.integers(0, 3_600_000))
                plan.append((start, n, shopper, due if s == 0 else []))
        for start, _, shopper, due in sorted(plan, key=lambda p: (p[0], p[1])):
            self.flush(start)
            self._session(shopper, start, launched, [p for p in due if p in shopper.needs])
        self._day_closes(day, day_ms, launched)

    def _session(self, shopper: Shopper, start: int, launched: np.ndarray, due: list[str]) -> None:
        first = len(self.events)
        self._clicked = None
        super()._session(shopper, start, launched, due)
        if self._clicked is not None:  # a list was shown: what of it was bought in this session
            ids = {self.catalog.ids[i] for i in self._clicked}
            self.outcome.purchases.append(sum(1 for e in self.events[first:] if e["event_type"] == "purchase"
                                              and e["payload"]["product_id"] in ids))
        self._clicked = None

    def _shown(self, shopper: Shopper, user, session, context, t, launched, viewed: list[int]) -> int:
        loop = self.loop_rng
        if self.shop is None or not self.showing or loop.random() >= self.share:
            return t
        self._lists += 1
        request_id = f"sim-rec-{self._lists:07d}"
        self.shopper = shopper
        try:
            shown_ids, version = self.shop.recommend(user, session, self.k, request_id)
        except Exception:  # noqa: BLE001 - a failed call shows nothing; counted
            self.outcome.failures += 1
            return t
        index = self.index_of
        shown = [index[p] for p in shown_ids[:self.k] if p in index]
        out = self.outcome
        out.lists += 1
        out.impressions += len(shown)
        out.versions[version] = out.versions.get(version, 0) + 1
        out.shoppers.append(shopper.user_id)
        out.list_versions.append(version)
        out.times.append(t)
        clicks, self._clicked = 0, set()
        expected_clicks = expected_purchases = 0.0
        for rank, i in enumerate(shown, 1):
            appeal = float(self._appeal(shopper, np.array([i]))[0])
            click = examine_probability(rank) / (1.0 + np.exp(CLICK_BIAS - appeal))
            cart = 1.0 / (1.0 + np.exp(-(CART_BIAS + appeal + self.market.price_utility(i, shopper.price_beta))))
            expected_clicks += click
            expected_purchases += click * cart * CHECKOUT_CHANCE
            if loop.random() < click:
                clicks += 1
                self._clicked.add(i)
                t += int(loop.exponential(20_000)) + 1000
                self.emit(t, "product_view", user, session, {"product_id": self.catalog.ids[i],
                                                             "price": float(self.market.price[i])},
                          {**context, "source": "recommend", "request_id": request_id, "position": str(rank)})
                viewed.append(i)
        out.clicks.append(clicks)
        out.expected_clicks.append(expected_clicks)
        out.expected_purchases.append(expected_purchases)
        return t


class PopularityShop:
    """The baseline: the most bought products of the last two weeks, the same list for all."""

    def __init__(self, days: float = 14.0) -> None:
        self.window_ms = int(days * DAY_MS)
        self.bought: list[tuple[int, str, float]] = []

    def observe(self, events: list[dict]) -> None:
        for e in events:
            if e["event_type"] == "purchase":
                self.bought.append((e["timestamp"], e["payload"]["product_id"], float(e["payload"]["quantity"])))

    def recommend(self, user: str | None, session: str, k: int, request_id: str) -> tuple[list[str], str]:
        newest = max((t for t, _, _ in self.bought), default=0)
        counts: dict[str, float] = {}
        for t, product, quantity in self.bought:
            if t >= newest - self.window_ms:
                counts[product] = counts.get(product, 0.0) + quantity
        return sorted(counts, key=lambda p: (-counts[p], p))[:k], "popularity"


class OracleShop:
    """The ceiling: each shopper's list ranked by their true chance to click and buy."""

    def __init__(self, sim: ClosedLoopSimulation) -> None:
        self.sim = sim

    def observe(self, events: list[dict]) -> None:
        return None

    def recommend(self, user: str | None, session: str, k: int, request_id: str) -> tuple[list[str], str]:
        sim = self.sim
        shopper = sim.shopper
        items = np.arange(len(sim.catalog))
        appeal = sim._appeal(shopper, items)
        price = np.array([sim.market.price_utility(int(i), shopper.price_beta) for i in items])
        value = 1 / (1 + np.exp(CLICK_BIAS - appeal)) / (1 + np.exp(-(CART_BIAS + appeal + price)))
        return [sim.catalog.ids[i] for i in np.argsort(-value)[:k]], "oracle"


class ServerShop:
    """A running Hanzo server: events through IngestEvents, lists from Recommend (HOME)."""

    def __init__(self, url: str, batch: int = 500, timeout_s: float = 30.0) -> None:
        import grpc

        from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

        self.pb = commerce_pb2
        self.channel = grpc.insecure_channel(url)
        self.stub = commerce_pb2_grpc.CommerceStub(self.channel)
        self.batch, self.timeout_s = batch, timeout_s
        self.sent = self.rejected = 0

    def observe(self, events: list[dict]) -> None:
        from hanzo.server.features.events import record_to_proto

        for first in range(0, len(events), self.batch):
            request = self.pb.EventBatch(request_id=f"sim-{events[first]['event_id']}")
            for record in events[first:first + self.batch]:
                record_to_proto(record, request.events.add())
            ack = self.stub.IngestEvents(request, timeout=self.timeout_s)
            self.sent += len(request.events)
            self.rejected += len(ack.rejects)

    def recommend(self, user: str | None, session: str, k: int, request_id: str) -> tuple[list[str], str]:
        answer = self.stub.Recommend(self.pb.RecommendRequest(
            request_id=request_id, user_id=user or "", session_id=session, k=k,
            placement=self.pb.HOME), timeout=self.timeout_s)
        return [item.product_id for item in answer.items], answer.model_version

    def close(self) -> None:
        self.channel.close()
