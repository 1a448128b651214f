"""Outcomes joined to the decisions that led to them, as events arrive: a recommendation list
shown -> a product of it clicked -> that product bought by the same shopper within the
attribution window, per model version and arm within one comparison (the challenger's version the lists were
shown beside).

A list is a `recommendation_shown` event (the server's own, with the request id, the version
and the arm). A click is a `recommendation_clicked` event naming the list's request id, or a
`product_view` whose context carries it (`request_id`, as a storefront's tracking link sets);
only a product the list held counts, once per list. A purchase counts for the click before it
of the same shopper and product, within `window_ms` of the click by the events' own clock
(the client's, as both events are), once per click. Per (version, arm) it keeps, per shopper,
lists shown, clicks, purchases and revenue (server/experiments/sequential.RatioArm), so the
comparisons are over shoppers.

Memory is bounded: the newest `max_lists` lists and `max_clicks` clicks are remembered (the
oldest forgotten first; an outcome for a forgotten list is not counted, and counted as late)."""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from .sequential import RatioArm

log = logging.getLogger(__name__)


@dataclass
class ArmOutcomes:
    """One (version, arm)'s outcomes, each a ratio over its lists shown, per shopper."""
    clicks: RatioArm = field(default_factory=RatioArm)  # clicks / lists
    purchases: RatioArm = field(default_factory=RatioArm)  # purchases through a click / lists
    revenue: RatioArm = field(default_factory=RatioArm)  # their revenue / lists

    @property
    def lists(self) -> int:
        return int(self.clicks.den)

    def summary(self) -> dict:
        return {"lists": self.lists, "shoppers": self.clicks.n, "clicks": int(self.clicks.num),
                "purchases": int(self.purchases.num), "revenue": round(self.revenue.num, 2),
                "ctr": _rate(self.clicks), "conversion": _rate(self.purchases),
                "revenue_per_list": _rate(self.revenue)}


def _rate(arm: RatioArm) -> float | None:
    return round(arm.ratio, 6) if arm.den else None


@dataclass
class _List:
    key: tuple[str, str, str]  # (model version, arm, the challenger's version the arms compare)
    unit: str  # the shopper (or session) it was shown to
    products: frozenset[str]
    clicked: set[str] = field(default_factory=set)


class OutcomeJoin:
    def __init__(self, window_ms: int = 24 * 3_600_000, max_lists: int = 500_000, max_clicks: int = 500_000) -> None:
        self.window_ms = window_ms
        self.max_lists, self.max_clicks = max_lists, max_clicks
        self.arms: dict[tuple[str, str, str], ArmOutcomes] = {}
        self._lists: OrderedDict[str, _List] = OrderedDict()  # request id -> the list
        # (shopper, product) -> (list's request id, click time, bought already)
        self._clicks: OrderedDict[tuple[str, str], tuple[str, int, bool]] = OrderedDict()
        self.late = 0  # outcomes whose list was forgotten (or never seen)

    def observe(self, events: list[dict]) -> None:
        """Events as the store applied them (never raises: a malformed event is skipped)."""
        for event in events:
            kind = event.get("event_type")
            try:
                if kind == "recommendation_shown":
                    self._shown(event)
                elif kind == "recommendation_clicked":
                    self._click(event, event["payload"].get("request_id"))
                elif kind == "product_view" and (event.get("context") or {}).get("request_id"):
                    self._click(event, event["context"]["request_id"])
                elif kind == "purchase":
                    self._purchase(event)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue

    def outcomes(self, version: str, arm: str, experiment: str = "") -> ArmOutcomes:
        """A (version, arm)'s outcomes within one comparison (`experiment`: the challenger's
        version while the lists were shown), so both arms of a comparison cover one period."""
        return self.arms.setdefault((version, arm, experiment), ArmOutcomes())

    def _unit(self, event: dict) -> str:
        return event.get("user_id") or event.get("session_id") or ""

    def _shown(self, event: dict) -> None:
        payload = event["payload"]
        request_id = payload.get("request_id")
        unit = self._unit(event)
        if not request_id or not unit or request_id in self._lists:
            return
        key = (str(payload.get("model_version", "")), str(payload.get("arm") or "production"),
               str(payload.get("experiment") or ""))
        self._lists[request_id] = _List(key, unit, frozenset(payload.get("product_ids") or ()))
        while len(self._lists) > self.max_lists:
            self._lists.popitem(last=False)
        outcomes = self.outcomes(*key)
        for ratio in (outcomes.clicks, outcomes.purchases, outcomes.revenue):
            ratio.add(unit, 0.0, 1.0)

    def _click(self, event: dict, request_id: str | None) -> None:
        shown = self._lists.get(request_id) if request_id else None
        if shown is None:
            self.late += request_id is not None
            return
        product = event["payload"]["product_id"]
        if product not in shown.products or product in shown.clicked:
            return
        shown.clicked.add(product)
        self.outcomes(*shown.key).clicks.add(shown.unit, 1.0, 0.0)
        self._clicks[(self._unit(event), product)] = (request_id, int(event["timestamp"]), False)
        self._clicks.move_to_end((self._unit(event), product))
        while len(self._clicks) > self.max_clicks:
            self._clicks.popitem(last=False)

    def _purchase(self, event: dict) -> None:
        payload = event["payload"]
        click_key = (self._unit(event), payload["product_id"])
        click = self._clicks.get(click_key)
        if click is None:
            return
        request_id, at, bought = click
        if bought or not 0 <= int(event["timestamp"]) - at <= self.window_ms:
            return
        shown = self._lists.get(request_id)
        if shown is None:
            self.late += 1
            return
        self._clicks[click_key] = (request_id, at, True)
        outcomes = self.outcomes(*shown.key)
        outcomes.purchases.add(shown.unit, 1.0, 0.0)
        revenue = float(payload.get("price") or 0.0) * float(payload.get("quantity") or 1.0)
        outcomes.revenue.add(shown.unit, revenue, 0.0)

    def report(self) -> dict:
        """Per version, arm and comparison: lists, shoppers, clicks, purchases, revenue, rates."""
        return {"/".join(filter(None, key)): outcomes.summary() for key, outcomes in sorted(self.arms.items())}
