"""Quotes joined to the purchases made at the quoted price: QuotePrice -> a purchase of that
product at that price within the attribution window, per demand-model version. Per version:
quotes answered, the purchases, units, revenue and margin (price - cost) they led to, so
revenue and margin per quote can be compared between versions.

A quote is a price for a product, not for a shopper: the purchase that follows may be anyone's.
It counts for the product's latest quote while the purchase's price is that quote's (within a
cent, or half a percent of it for dearer goods: a shop rounds what it is told) and it comes
within `window_ms` after the quote, by the server's clock for the quote and the event's own
for the purchase. A purchase at another price is the shop not taking the quote, and counts for
nothing. Only quotes served count, never a shadow copy's.

Memory is bounded: the latest quote of the newest `max_products` products quoted is
remembered. Nothing here is about a shopper, so an erasure has nothing to remove."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class QuoteOutcomes:
    quotes: int = 0
    purchases: int = 0
    units: float = 0.0
    revenue: float = 0.0
    margin: float = 0.0  # (price - cost) x units, with the cost the quote was made for

    def summary(self) -> dict:
        per_quote = (lambda total: round(total / self.quotes, 6)) if self.quotes else (lambda total: None)
        return {"quotes": self.quotes, "purchases": self.purchases, "units": self.units,
                "revenue": round(self.revenue, 2), "margin": round(self.margin, 2),
                "revenue_per_quote": per_quote(self.revenue), "margin_per_quote": per_quote(self.margin)}


@dataclass(slots=True)
class _Quote:
    version: str
    price: float
    cost: float
    at: int  # ms


def same_price(paid: float, quoted: float) -> bool:
    return abs(paid - quoted) <= max(0.01, 0.005 * quoted) + 1e-9


class QuoteJoin:
    def __init__(self, window_ms: int = 24 * 3_600_000, max_products: int = 100_000) -> None:
        self.window_ms = window_ms
        self.max_products = max_products
        self.versions: dict[str, QuoteOutcomes] = {}
        self._latest: OrderedDict[str, _Quote] = OrderedDict()  # product id -> its latest quote

    def outcomes(self, version: str) -> QuoteOutcomes:
        found = self.versions.get(version)
        if found is None:
            found = self.versions[version] = QuoteOutcomes()
        return found

    def quoted(self, product_id: str, version: str, price: float, cost: float, at_ms: int) -> None:
        """A quote answered (not a shadow copy)."""
        self._latest[product_id] = _Quote(version, float(price), float(cost), int(at_ms))
        self._latest.move_to_end(product_id)
        while len(self._latest) > self.max_products:
            self._latest.popitem(last=False)
        self.outcomes(version).quotes += 1

    def observe(self, events: list[dict]) -> None:
        """Events as the store applied them (never raises: a malformed event is skipped)."""
        for event in events:
            if event.get("event_type") != "purchase":
                continue
            try:
                payload = event["payload"]
                quote = self._latest.get(payload.get("product_id"))
                if quote is None or not 0 <= int(event["timestamp"]) - quote.at <= self.window_ms:
                    continue
                paid = float(payload.get("price"))
                if not same_price(paid, quote.price):
                    continue
                units = float(payload.get("quantity") or 1.0)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            outcomes = self.outcomes(quote.version)
            outcomes.purchases += 1
            outcomes.units += units
            outcomes.revenue += paid * units
            outcomes.margin += (paid - quote.cost) * units

    def report(self) -> dict:
        return {version: outcomes.summary() for version, outcomes in sorted(self.versions.items())}
