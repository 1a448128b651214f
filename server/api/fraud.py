"""ScoreFraud: FraudRequest <-> the surface's plain order and result."""
from __future__ import annotations

import math

from hanzo.v1 import commerce_pb2

from ..features.tenancy import SCOPED_CONTEXT, scoped
from ..models.errors import InvalidArgument
from ..surfaces.fraud import FraudScorer
from ..surfaces.fraud_inputs import FraudOrder
from .merchants import merchant_of, own_id

MAX_ITEMS = 1000
MAX_SIGNALS = 256
MAX_AMOUNT = 1e12  # beyond float32's comfort once summed into the windows


def to_order(request: commerce_pb2.FraudRequest) -> FraudOrder:
    """The order, its shopper's ids (user, session, order, card, device, IP, email, addresses)
    kept as the request's merchant's own (features/tenancy.py)."""
    merchant = merchant_of(request)
    if not request.HasField("order"):
        raise InvalidArgument("order", "is required")
    order = request.order
    if not order.order_id:
        raise InvalidArgument("order.order_id", "is empty")
    if not math.isfinite(order.amount) or not 0 <= order.amount <= MAX_AMOUNT:
        raise InvalidArgument("order.amount", f"must be an amount in 0..{MAX_AMOUNT:g}, not {order.amount}")
    if len(order.items) > MAX_ITEMS:
        raise InvalidArgument("order.items", f"{len(order.items)} lines is over the limit of {MAX_ITEMS}")
    if len(order.signals) > MAX_SIGNALS:
        raise InvalidArgument("order.signals", f"{len(order.signals)} signals is over the limit of {MAX_SIGNALS}")
    items = []
    for i, item in enumerate(order.items):
        if not item.product_id:
            raise InvalidArgument(f"order.items[{i}].product_id", "is empty")
        if not (math.isfinite(item.quantity) and item.quantity > 0):
            raise InvalidArgument(f"order.items[{i}].quantity", f"must be > 0, not {item.quantity}")
        if not (math.isfinite(item.price) and item.price >= 0):
            raise InvalidArgument(f"order.items[{i}].price", f"must be >= 0, not {item.price}")
        items.append({"product_id": item.product_id, "quantity": item.quantity, "price": item.price})
    for name, value in order.signals.items():
        if not math.isfinite(value):
            raise InvalidArgument(f"order.signals[{name}]", f"must be a finite number, not {value}")
    timestamp = 0
    if order.HasField("timestamp"):
        timestamp = order.timestamp.seconds * 1000 + order.timestamp.nanos // 1_000_000
        if timestamp <= 0:
            raise InvalidArgument("order.timestamp", "must be after 1970")
    def own(name: str) -> str:
        return own_id(merchant, getattr(order, name), f"order.{name}")

    return FraudOrder(order_id=own("order_id"), timestamp=timestamp, amount=order.amount,
                      user_id=own("user_id"), session_id=own("session_id"), currency=order.currency,
                      card_id=own("card_id"), device_id=own("device_id"), ip=own("ip"),
                      email=own("email"), shipping_address_id=own("shipping_address_id"),
                      billing_address_id=own("billing_address_id"), items=items or None,
                      signals=dict(order.signals) or None, context=_context(order.context, merchant))


def _context(context, merchant: str) -> dict | None:
    out = dict(context)
    for name in SCOPED_CONTEXT:
        if out.get(name):
            out[name] = scoped(merchant, out[name])
    return out or None


async def score_fraud(scorer: FraudScorer, request: commerce_pb2.FraudRequest,
                      deadline: float | None) -> commerce_pb2.FraudResponse:
    result = await scorer.score(to_order(request), request.merchant_id, request.request_id, deadline)
    response = commerce_pb2.FraudResponse(score=result.score, decision=commerce_pb2.Decision.Value(result.decision),
                                          model_version=result.model_version, request_id=request.request_id)
    for reason in result.reasons:
        response.reasons.add(feature=reason.feature, value=reason.value, contribution=reason.contribution,
                             text=reason.text)
    return response
