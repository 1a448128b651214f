"""ScoreCustomers: CustomersRequest <-> the surface's keys and answer. User ids are the
merchant's own (features/tenancy.py), so one shop never reads another's shoppers."""
from __future__ import annotations

from hanzo.v1 import commerce_pb2

from ..models.errors import InvalidArgument
from ..surfaces.customers import CustomerScorer
from .merchants import merchant_of, own_id

MAX_CUSTOMERS = 1000
MAX_HORIZON_DAYS = 730
MAX_ID_CHARS = 256  # as ingest takes a user id


def to_keys(request: commerce_pb2.CustomersRequest) -> list[str]:
    merchant = merchant_of(request)
    ids = list(request.user_ids)
    if not ids:
        raise InvalidArgument("user_ids", "empty: name at least one customer")
    if len(ids) > MAX_CUSTOMERS:
        raise InvalidArgument("user_ids", f"{len(ids)} customers in one request; the limit is {MAX_CUSTOMERS}")
    for i, user in enumerate(ids):
        if not user or len(user) > MAX_ID_CHARS:
            raise InvalidArgument(f"user_ids[{i}]", f"must be 1..{MAX_ID_CHARS} characters")
    if not 1 <= request.horizon_days <= MAX_HORIZON_DAYS:
        raise InvalidArgument("horizon_days", f"must be in 1..{MAX_HORIZON_DAYS}, not {request.horizon_days}")
    return [own_id(merchant, user, f"user_ids[{i}]") for i, user in enumerate(ids)]


async def score_customers(scorer: CustomerScorer, request: commerce_pb2.CustomersRequest
                          ) -> commerce_pb2.CustomersResponse:
    keys = to_keys(request)
    answer = await scorer.score(keys, request.horizon_days)
    response = commerce_pb2.CustomersResponse(model_version=answer.model_version, request_id=request.request_id)
    for i, user in enumerate(request.user_ids):
        outlook = response.customers.add(user_id=user, known=bool(answer.known[i]))
        if outlook.known:
            outlook.p_buy_again = float(answer.p_buy_again[i])
            outlook.expected_purchases = float(answer.expected_purchases[i])
            outlook.expected_spend = float(answer.expected_spend[i])
            outlook.risk_band = answer.risk_band[i]
            outlook.reasons.extend(answer.reasons[i])
    return response
