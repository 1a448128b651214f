"""Outcomes joined to the decisions that led to them: a result list shown (a recommendation
list, or a search's results) -> a product of it clicked -> that product bought by the same
shopper within the attribution window, per model version and arm within one comparison (the
challenger's version the lists were shown beside).

Lists come from the surfaces themselves (`shown`, in process: Recommend's recommendation_shown
and Search's search events, before they are logged), never from events a caller sent: an
ingest key cannot add lists to an arm. A click is a `recommendation_clicked` event naming a
recommendation list's request id, or a `product_view` whose context carries a list's request
id (`request_id`, as a storefront's tracking link sets), by the shopper the list was shown to;
only a product the list held counts, once per list. A purchase counts for the click before it
of the same shopper and product, within `window_ms` of the click by the events' own clock (the
client's, as both events are), once per click.

Per (version, arm, comparison) it keeps lists shown, clicks, purchases and revenue
(server/experiments/sequential.RatioArm). Within a comparison they are kept per shopper, so
the gate's tests are over shoppers; outside one (no experiment running, or search, which is
not split) only the sums are kept, so memory does not grow with the shoppers.

Memory is bounded: the newest `max_lists` lists and `max_clicks` clicks are remembered (the
oldest forgotten first; a click on a forgotten list is not counted, and counted as late), and
`keep` drops the outcomes of comparisons no longer made. A shopper erased on request leaves
every per-shopper count and every remembered list and click (`forget`); the sums outside a
comparison hold no shopper and stay."""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from .sequential import RatioArm

log = logging.getLogger(__name__)


# the event a surface logs for a list it served -> the surface
SURFACES = {"recommendation_shown": "recommend", "search": "search"}


@dataclass
class ArmOutcomes:
    """One (version, arm, comparison)'s outcomes, each a ratio over its lists shown (per
    shopper within a comparison)."""
    clicks: RatioArm  # clicks / lists
    purchases: RatioArm  # purchases through a click / lists
    revenue: RatioArm  # their revenue / lists

    @classmethod
    def new(cls, per_shopper: bool) -> "ArmOutcomes":
        return cls(RatioArm(per_unit=per_shopper), RatioArm(per_unit=per_shopper), RatioArm(per_unit=per_shopper))

    @property
    def lists(self) -> int:
        return int(self.clicks.den)

    def summary(self) -> dict:
        return {"lists": self.lists, "shoppers": self.clicks.n if self.clicks.per_unit else None, "clicks": int(self.clicks.num),
                "purchases": int(self.purchases.num), "revenue": round(self.revenue.num, 2),
                "ctr": _rate(self.clicks), "conversion": _rate(self.purchases),
                "revenue_per_list": _rate(self.revenue)}

    def remove(self, unit: str) -> None:
        for ratio in (self.clicks, self.purchases, self.revenue):
            ratio.remove(unit)


def _rate(arm: RatioArm) -> float | None:
    return round(arm.ratio, 6) if arm.den else None


Key = tuple[str, str, str]  # (model version, arm, the challenger's version the arms compare)


@dataclass(slots=True)
class _List:
    key: Key
    products: tuple[str, ...]  # a handful: a tuple is the smallest to hold, and quick enough to search
    clicked: tuple[str, ...] = ()


@dataclass(slots=True)
class _Click:
    key: Key
    at: int  # the click's own time, ms
    bought: bool = False


class OutcomeJoin:
    def __init__(self, window_ms: int = 24 * 3_600_000, max_lists: int = 200_000, max_clicks: int = 200_000) -> None:
        self.window_ms = window_ms
        self.max_lists, self.max_clicks = max_lists, max_clicks
        self.arms: dict[Key, ArmOutcomes] = {}
        # (shopper, request id, surface) -> the list: a shop may give a page's search and its
        # recommendations one request id
        self._lists: OrderedDict[tuple[str, str, str], _List] = OrderedDict()
        self._clicks: OrderedDict[tuple[str, str], _Click] = OrderedDict()  # (shopper, product) -> the click
        self.late = 0  # clicks naming a list no longer remembered (or never shown)

    def outcomes(self, version: str, arm: str, experiment: str = "") -> ArmOutcomes:
        """A (version, arm)'s outcomes within one comparison (`experiment`: the challenger's
        version while the lists were shown), so both arms of a comparison cover one period."""
        key = (version, arm, experiment)
        found = self.arms.get(key)
        if found is None:
            found = self.arms[key] = ArmOutcomes.new(per_shopper=bool(experiment))
        return found

    def shown(self, event: dict) -> None:
        """A list a surface served (its recommendation_shown or search event, before it is
        logged). A search answered without a re-ranker counts as version `search:none`."""
        payload, surface = event["payload"], SURFACES[event["event_type"]]
        unit, request_id = _unit(event), payload.get("request_id")
        if not request_id or not unit or (unit, request_id, surface) in self._lists:
            return
        key = (str(payload.get("model_version") or f"{surface}:none"), str(payload.get("arm") or "production"),
               str(payload.get("experiment") or ""))
        self._lists[(unit, request_id, surface)] = _List(key, tuple(payload.get("product_ids") or ()))
        while len(self._lists) > self.max_lists:
            self._lists.popitem(last=False)
        outcomes = self.outcomes(*key)
        for ratio in (outcomes.clicks, outcomes.purchases, outcomes.revenue):
            ratio.add(unit, 0.0, 1.0)

    def observe(self, events: list[dict]) -> None:
        """Events as the store applied them (never raises: a malformed event is skipped)."""
        for event in events:
            kind = event.get("event_type")
            try:
                if kind == "recommendation_clicked":
                    self._click(event, event["payload"].get("request_id"), ("recommend",))
                elif kind == "product_view" and (event.get("context") or {}).get("request_id"):
                    self._click(event, event["context"]["request_id"], ("recommend", "search"))
                elif kind == "purchase":
                    self._purchase(event)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue

    def _click(self, event: dict, request_id: str | None, surfaces: tuple[str, ...]) -> None:
        unit, product = _unit(event), event["payload"]["product_id"]
        lists = [found for surface in surfaces if (found := self._lists.get((unit, request_id, surface)))] \
            if request_id else []
        if not lists:
            self.late += request_id is not None
            return
        # of the lists under this id, the one that held the product (a view is one click)
        shown = next((found for found in lists if product in found.products), None)
        if shown is None or product in shown.clicked:
            return
        shown.clicked += (product,)
        self.outcomes(*shown.key).clicks.add(unit, 1.0, 0.0)
        self._clicks[(unit, product)] = _Click(shown.key, int(event["timestamp"]))
        self._clicks.move_to_end((unit, product))
        while len(self._clicks) > self.max_clicks:
            self._clicks.popitem(last=False)

    def _purchase(self, event: dict) -> None:
        payload = event["payload"]
        unit = _unit(event)
        click = self._clicks.get((unit, payload["product_id"]))
        if click is None or click.bought or not 0 <= int(event["timestamp"]) - click.at <= self.window_ms:
            return
        click.bought = True
        outcomes = self.outcomes(*click.key)
        outcomes.purchases.add(unit, 1.0, 0.0)
        outcomes.revenue.add(unit, float(payload.get("price") or 0.0) * float(payload.get("quantity") or 1.0), 0.0)

    def keep(self, experiments: set[str]) -> None:
        """Drop the outcomes of every comparison but these (the current one, the one watched);
        the sums kept outside any comparison stay."""
        for key in [k for k in self.arms if k[2] and k[2] not in experiments]:
            del self.arms[key]

    def forget(self, unit: str) -> None:
        """A shopper erased on request: out of every count and every remembered list and click."""
        for outcomes in self.arms.values():
            outcomes.remove(unit)
        for key in [k for k in self._lists if k[0] == unit]:
            del self._lists[key]
        for key in [k for k in self._clicks if k[0] == unit]:
            del self._clicks[key]

    def report(self) -> dict:
        """Per version, arm and comparison: lists, shoppers, clicks, purchases, revenue, rates."""
        return {"/".join(filter(None, key)): outcomes.summary() for key, outcomes in sorted(self.arms.items())}


def _unit(event: dict) -> str:
    """The shopper an event is about (the session for a shopper without an id)."""
    return event.get("user_id") or event.get("session_id") or ""
