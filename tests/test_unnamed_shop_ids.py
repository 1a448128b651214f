"""A key bound to the unnamed shop (no merchant_id) may not reach a merchant's shopper through an
id `m|id`, in what it writes or in ScoreCustomers; without credentials, or with a key acting for
every merchant, a single shop's own ids holding `|` (auth0|..., a|b@example.com) are kept as
they are."""
from __future__ import annotations

import pytest

from hanzo.server.api.access import CALLER
from hanzo.server.api.customers import to_keys
from hanzo.server.api.features import _owned
from hanzo.server.api.keys import ApiKey
from hanzo.server.features.events import EventError
from hanzo.server.models.errors import InvalidArgument
from hanzo.v1 import commerce_pb2


def _event(**fields) -> dict:
    record = {"event_id": "e1", "event_type": "purchase", "timestamp": 1, "user_id": "auth0|5f7c", "session_id": "s",
              "payload": {"product_id": "p1", "email": "a|b@example.com"}, "context": {}}
    record.update(fields)
    return record


def test_a_single_shops_own_ids_with_the_separator_are_kept():
    assert _owned(_event(), "", shop_bound=False)["user_id"] == "auth0|5f7c"
    request = commerce_pb2.CustomersRequest(user_ids=["auth0|5f7c"], horizon_days=30)
    assert to_keys(request) == ["auth0|5f7c"]


def test_a_key_bound_to_the_unnamed_shop_cannot_reach_a_merchants_shopper():
    refused = _owned(_event(user_id="shop-a|c1"), "", shop_bound=True)
    assert isinstance(refused, EventError) and refused.field == "user_id"
    refused = _owned(_event(user_id="u1"), "", shop_bound=True)
    assert isinstance(refused, EventError) and refused.field == "payload.email"
    assert not isinstance(_owned(_event(user_id="u1", payload={"product_id": "p1"}), "", shop_bound=True), EventError)
    token = CALLER.set(ApiKey(id="k1", sha256="", scopes=("decide",), merchants=("",)))
    try:
        with pytest.raises(InvalidArgument, match="user_ids\\[0\\]"):
            to_keys(commerce_pb2.CustomersRequest(user_ids=["shop-a|c1"], horizon_days=30))
        assert to_keys(commerce_pb2.CustomersRequest(user_ids=["c1"], horizon_days=30)) == ["c1"]
    finally:
        CALLER.reset(token)


def test_the_unnamed_shops_event_ids_keep_the_separator_for_merchants():
    refused = _owned(_event(event_id="shop-a|e1"), "", shop_bound=False)
    assert isinstance(refused, EventError) and refused.field == "event_id"


def test_every_read_of_a_bound_unnamed_shop_key_refuses_a_merchants_id_by_field():
    from hanzo.server.api.fraud import to_order
    from hanzo.server.api.recommend import to_query as recommend_query
    from hanzo.server.api.search import to_query as search_query

    token = CALLER.set(ApiKey(id="k1", sha256="", scopes=("decide",), merchants=("",)))
    try:
        for call, request, field in (
                (recommend_query, commerce_pb2.RecommendRequest(user_id="shop-a|c1"), "user_id"),
                (lambda r: search_query(r, 100), commerce_pb2.SearchRequest(query="x", session_id="shop-a|s1"),
                 "session_id"),
                (to_order, commerce_pb2.FraudRequest(order=commerce_pb2.Order(order_id="o1", amount=1.0,
                                                                           card_id="shop-a|k")),
                 "order.card_id")):
            with pytest.raises(InvalidArgument) as refused:
                call(request)
            assert refused.value.field == field
    finally:
        CALLER.reset(token)
    assert recommend_query(commerce_pb2.RecommendRequest(user_id="auth0|c1")).user_id == "auth0|c1"
