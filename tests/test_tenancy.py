"""Two merchants send the same shoppers and the same event ids to one real server, embedded
and Redis-backed: neither batch is a duplicate of the other's, each merchant's GetFeatures
equals the offline join over its own events only, the unnamed shop sees neither, and a
merchant id that could pass for another's is refused."""
import grpc
import numpy as np
import pytest
from helpers import simulated_world
from test_feature_server import _feature_names, batches, read_online

from hanzo.server.features.offline import get_historical_features, load_log_records
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow
ENTITIES = ("user", "session", "card", "device")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return simulated_world(tmp_path_factory.mktemp("world"), days=4, seed=5, users=80, products=60, fraud_level=15)


def read(stub, merchant, entity, ids):
    request = commerce_pb2.FeaturesRequest(merchant_id=merchant, entity=entity, entity_ids=ids)
    response = stub.GetFeatures(request, timeout=10)
    assert list(response.entity_ids) == ids  # echoed as the merchant sent them
    return read_online(_Merchant(stub, merchant), entity, ids)


class _Merchant:
    """The stub with merchant_id set on every GetFeatures (read_online builds its own request)."""

    def __init__(self, stub, merchant):
        self.stub, self.merchant = stub, merchant

    def GetFeatures(self, request, timeout):
        request.merchant_id = self.merchant
        return self.stub.GetFeatures(request, timeout=timeout)


@pytest.mark.parametrize("backend", ["embedded", "redis"])
def test_two_merchants_with_the_same_ids_each_read_only_their_own(served, tmp_path, world, backend, request):
    world_dir, events = world
    extra = ()
    if backend == "redis":
        request.getfixturevalue("redis_client")
        extra = ("--feature-backend", "redis", "--redis-url", request.getfixturevalue("redis_server"))
    server = served(world_dir, *extra)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    half = len(events) // 2
    for merchant, mine in (("shop-a", events), ("shop-b", events[:half])):
        for batch in batches(mine, 300):
            batch.merchant_id = merchant
            ack = stub.IngestEvents(batch, timeout=30)
            # the same event ids from the other shop are not duplicates of its
            assert ack.accepted == len(batch.events) and ack.duplicates == 0 and not ack.rejects

    users = sorted({e["user_id"] for e in events[:half] if e.get("user_id")})[:30]
    cards = sorted({e["payload"]["card_id"] for e in events[:half] if e["payload"].get("card_id")})[:20]
    devices = sorted({e["payload"]["device_id"] for e in events[:half] if e["payload"].get("device_id")})[:20]
    sessions = sorted({e["session_id"] for e in events[:half] if e.get("session_id")})[:20]
    ids = {"user": users + ["unknown"], "card": cards, "device": devices, "session": sessions}
    compared = 0
    for entity in ENTITIES:
        assert ids[entity], entity
        names = _feature_names(entity)
        for merchant, mine in (("shop-a", events), ("shop-b", events[:half])):
            as_of, values, missing, sequences = read(stub, merchant, entity, ids[entity])
            offline = get_historical_features(mine, entity, [(i, as_of) for i in ids[entity]], names,
                                              catalog=world_dir / "catalog.jsonl")
            np.testing.assert_array_equal(values, offline.values, err_msg=f"{merchant} {entity}")
            np.testing.assert_array_equal(missing, offline.missing, err_msg=f"{merchant} {entity}")
            assert sequences == offline.sequences
            compared += values.size
        # the unnamed shop holds none of these shoppers
        _, _, missing, _ = read(stub, "", entity, ids[entity])
        nothing = get_historical_features([], entity, [(i, as_of) for i in ids[entity]], names,
                                          catalog=world_dir / "catalog.jsonl")
        np.testing.assert_array_equal(missing, nothing.missing, err_msg=f"unnamed {entity}")
    assert compared > 1000

    # the unnamed shop cannot write an id in a merchant's namespace ahead of it
    batch = commerce_pb2.EventBatch()
    event = batch.events.add(event_id="shop-a|claimed", event_type="page_view", user_id="u", session_id="s")
    event.timestamp.GetCurrentTime()
    ack = stub.IngestEvents(batch, timeout=10)
    assert ack.accepted == 0 and [(r.field, r.event_id) for r in ack.rejects] == [("event_id", "shop-a|claimed")]

    for bad in ("shop-a|x", "a" * 65, "shop a"):
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetFeatures(commerce_pb2.FeaturesRequest(merchant_id=bad, entity="user", entity_ids=["u"]),
                             timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith("merchant_id:")
    assert server.terminate() == 0
    logged = load_log_records(tmp_path / "data")
    assert len(logged) == len(events) + half  # nothing of the refused batch
    assert {r["event_id"].split("|", 1)[0] for r in logged} == {"shop-a", "shop-b"}


def test_a_scored_order_names_the_merchants_own_shopper_card_device_and_order():
    from hanzo.server.api.fraud import to_order

    order = commerce_pb2.Order(order_id="1001", user_id="u1", card_id="c1", device_id="", email="e@x", amount=5,
                               context={"device": "d1", "channel": "web"})
    mine = to_order(commerce_pb2.FraudRequest(merchant_id="shop-a", order=order))
    assert (mine.order_id, mine.user_id, mine.card_id, mine.email) == ("shop-a|1001", "shop-a|u1", "shop-a|c1",
                                                                       "shop-a|e@x")
    assert mine.context == {"device": "shop-a|d1", "channel": "web"} and mine.device_id == ""
    unnamed = to_order(commerce_pb2.FraudRequest(order=order))
    assert (unnamed.order_id, unnamed.user_id, unnamed.context["device"]) == ("1001", "u1", "d1")


@pytest.mark.parametrize("backend", ["embedded", "redis"])
def test_personal_data_is_kept_as_pseudonyms_only(served, tmp_path, world, backend, request):
    world_dir, _ = world
    extra = ()
    if backend == "redis":
        redis_client = request.getfixturevalue("redis_client")
        extra = ("--feature-backend", "redis", "--redis-url", request.getfixturevalue("redis_server"))
    server = served(world_dir, *extra)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    secrets = {"email": "alice.liddell@example.org", "ip": "203.0.113.77", "card_id": "4111111111111111",
               "shipping_address_id": "12 Rabbit Hole Lane", "billing_address_id": "1 Looking Glass Rd"}
    batch = commerce_pb2.EventBatch(merchant_id="shop-a")
    for n in range(3):
        event = batch.events.add(event_id=f"o{n}", event_type="order", user_id="alice", session_id="s1")
        event.timestamp.GetCurrentTime()
        event.payload.order_id = f"order-{n}"
        event.payload.amount = 20.0 + n
        for name, value in secrets.items():
            setattr(event.payload, name, value)
        event.context["ip_address"] = secrets["ip"]  # the same data under a context name
    assert stub.IngestEvents(batch, timeout=10).accepted == 3
    # asked by the value itself, the card is found: the server pseudonymises the question too
    _, values, missing, _ = read(stub, "shop-a", "card", [secrets["card_id"]])
    names = _feature_names("card")
    assert values[0, names.index("card_orders_24h")] == 3 and not missing[0, names.index("card_orders_24h")]
    bad = commerce_pb2.EventBatch(merchant_id="shop-a")
    wrong = bad.events.add(event_id="o9", event_type="order", user_id="alice", session_id="s1")
    wrong.payload.email = secrets["email"]  # no timestamp, no order id: rejected
    assert stub.IngestEvents(bad, timeout=10).rejects
    assert server.terminate() == 0

    for record in load_log_records(tmp_path / "data"):
        for name in secrets:
            assert record["payload"].get(name, "h:").startswith("h:"), (name, record["payload"].get(name))
    plain = [v.encode() for v in secrets.values()]
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [v for v in plain if v in data], path
    text = server.log_path.read_text() + server.out_path.read_text()
    assert not [v for v in secrets.values() if v in text]
    if backend == "redis":
        for key in redis_client.scan_iter(count=1000):
            assert not [v for v in plain if v in key], key
