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
