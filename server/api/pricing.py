"""QuotePrice: PriceRequest <-> the surface's plain query and answer. The request's context
carries what a caller may know better than the catalogue: location (stock there only), cost,
current_price, stock, days_to_restock; other context keys are ignored."""
from __future__ import annotations

import math

from hanzo.v1 import commerce_pb2

from ..models.errors import InvalidArgument
from ..surfaces.pricing import PriceQuery, PriceQuoter
from .merchants import merchant_of

MAX_PRICE = 1e9
NUMBERS = {  # context key -> (least, most)
    "cost": (0.0, MAX_PRICE),
    "current_price": (1e-6, MAX_PRICE),
    "stock": (0.0, 1e12),
    "days_to_restock": (1e-3, 365.0),
}
MAX_COMPETITORS = 1000


def _number(context, key: str) -> float | None:
    if key not in context:
        return None
    least, most = NUMBERS[key]
    try:
        value = float(context[key])
    except ValueError:
        raise InvalidArgument(f"context[{key}]", f"is not a number: {context[key]!r}") from None
    if not (math.isfinite(value) and least <= value <= most):
        raise InvalidArgument(f"context[{key}]", f"must be in [{least:g}, {most:g}], not {context[key]!r}")
    return value


def to_query(request: commerce_pb2.PriceRequest) -> PriceQuery:
    merchant_of(request)  # the catalogue is shared: the id is checked, nothing is scoped
    if not request.product_id:
        raise InvalidArgument("product_id", "is empty")
    if len(request.competitor_prices) > MAX_COMPETITORS:
        raise InvalidArgument("competitor_prices", f"at most {MAX_COMPETITORS}, not {len(request.competitor_prices)}")
    competitors = list(request.competitor_prices)
    for i, price in enumerate(competitors):
        if not (math.isfinite(price) and 0 < price <= MAX_PRICE):
            raise InvalidArgument(f"competitor_prices[{i}]", f"must be a price in (0, {MAX_PRICE:g}], not {price!r}")
    context = request.context
    return PriceQuery(request.product_id, competitors, context.get("location", ""), _number(context, "cost"),
                      _number(context, "current_price"), _number(context, "stock"),
                      _number(context, "days_to_restock"), _version(request.model_version))


def _version(text: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 2**63):
        raise InvalidArgument("model_version", f"a version number, or empty for production; not {text[:40]!r}")
    return int(text)


async def quote_price(quoter: PriceQuoter, request: commerce_pb2.PriceRequest) -> commerce_pb2.PriceResponse:
    answer = await quoter.quote(to_query(request), request.request_id)
    choice = answer.quote.choice
    return commerce_pb2.PriceResponse(
        price=choice.price, expected_units=choice.expected_units, expected_profit=choice.expected_profit,
        active_constraints=choice.active + [f"{name}:violated" for name in choice.violated],
        explanation=answer.quote.explanation, model_version=answer.model_version, request_id=request.request_id)
