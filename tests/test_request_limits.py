"""Bad input at the edge: a body that does not decode, a field over its [limits], a Timestamp
outside its range, each refused INVALID_ARGUMENT naming the field with the value quoted short;
one bad event in a batch is one reject. Unit checks on the limit walker, then a real server."""
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2
from tritonclient.grpc import service_pb2 as pb

from hanzo.server.api.limits import RequestLimits
from hanzo.server.features.events import EventError, check_record
from hanzo.server.models.errors import InvalidArgument, quote
from hanzo.server.models.limits import FieldLimits
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

BIG = "u" * (5 << 20)
LONG = "u" * (1 << 20)  # within the message limit, over every field limit
LIMITS = RequestLimits(FieldLimits())


def refused(message) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        LIMITS.check(message)
    assert len(info.value.message) < 300, info.value.message
    return info.value


def test_quote_cuts_a_huge_value_and_says_how_long_it_was():
    assert quote("abc") == "'abc'"
    cut = quote(BIG)
    assert len(cut) < 100 and str(len(BIG)) in cut


def test_limits_name_the_field_path():
    assert refused(commerce_pb2.RecommendRequest(user_id=BIG)).field == "user_id"
    assert refused(commerce_pb2.RecommendRequest(k=101)).field == "k"
    assert refused(commerce_pb2.SearchRequest(query="q" * 20_000)).field == "query"
    assert refused(commerce_pb2.RecommendRequest(anchor_product_ids=["p"] * 1001)).field == "anchor_product_ids"
    assert refused(commerce_pb2.RecommendRequest(anchor_product_ids=["p", "x" * 300])).field == "anchor_product_ids[1]"
    assert refused(commerce_pb2.FeaturesRequest(feature_names=["f"] * 257)).field == "feature_names"
    order = commerce_pb2.FraudRequest()
    order.order.items.add(product_id="x" * 300)
    assert refused(order).field == "order.items[0].product_id"
    order = commerce_pb2.FraudRequest()
    order.order.context.update({f"k{i}": "v" for i in range(300)})
    assert refused(order).field == "order.context"
    infer = pb.ModelInferRequest(model_name="m")
    infer.inputs.add(name="n" * 300)
    assert refused(infer).field == "inputs[0].name"


def test_timestamps_outside_their_range_are_refused():
    for stamp, field in (({"seconds": 1, "nanos": -5}, "as_of.nanos"), ({"seconds": 2**63 - 1}, "as_of.seconds"),
                         ({"seconds": -62_135_596_801}, "as_of.seconds")):
        assert refused(commerce_pb2.FeaturesRequest(as_of=stamp)).field == field
    LIMITS.check(commerce_pb2.FeaturesRequest(as_of={"seconds": 253_402_300_799, "nanos": 999_999_999}))


def test_limits_leave_tensor_contents_and_good_requests_alone():
    infer = pb.ModelInferRequest(model_name="m", raw_input_contents=[b"\0" * 100_000])
    infer.inputs.add(name="x", datatype="INT64", shape=[5000]).contents.int64_contents.extend(range(5000))
    LIMITS.check(infer)
    LIMITS.check(commerce_pb2.RecommendRequest(user_id="u1", k=100, anchor_product_ids=["p"] * 1000))
    wide = RequestLimits(FieldLimits(max_id_chars=10_000, max_recommend_k=500))
    wide.check(commerce_pb2.RecommendRequest(user_id="u" * 9000, k=500))


def test_limits_must_be_positive_integers():
    with pytest.raises(ValueError, match="max_id_chars"):
        FieldLimits(max_id_chars=0)


def test_an_event_over_a_limit_or_past_9999_is_one_reject():
    now = int(time.time() * 1000)
    good = {"event_id": "e1", "event_type": "product_view", "timestamp": now, "user_id": "u1", "session_id": "s1",
            "payload": {"product_id": "p1"}, "context": {}}
    check_record(good, 300_000, now)
    for change, field in (({"user_id": BIG}, "user_id"), ({"event_type": BIG}, "event_type"),
                          ({"payload": {"product_id": "p" * 600}}, "payload.product_id"),
                          ({"payload": {"product_id": "p1", "product_ids": ["p"] * 1001}}, "payload.product_ids"),
                          ({"context": {f"k{i}": "v" for i in range(300)}}, "context"),
                          ({"session_id": "s" * 529}, "session_id"),
                          ({"timestamp": 253_402_300_800_000}, "timestamp")):
        with pytest.raises(EventError) as info:
            check_record({**good, **change}, 10**18, now)
        assert info.value.field == field and len(info.value.reason) < 300, info.value


# ---------------------------------------------------------------- a real server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from helpers import ServerProcess, slow_config, slow_model
    from hanzo.training.repository_writer import write_version

    root = tmp_path_factory.mktemp("limits") / "model_repo"
    write_version(root, slow_config(name="slow", max_batch_size=4), 1, slow_model(layers=2))
    process = ServerProcess(root, "--no-demo-models").wait_ready()
    yield process
    process.terminate()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["/hanzo.v1.Commerce/Recommend", "/hanzo.v1.Commerce/IngestEvents",
                                    "/inference.GRPCInferenceService/ModelInfer",
                                    "/inference.GRPCInferenceService/ServerLive", "/hanzo.v1.Admin/GetLatency",
                                    "/grpc.health.v1.Health/Check"])
def test_a_body_that_does_not_decode_is_invalid_argument(server, method):
    call = grpc.insecure_channel(server.url).unary_unary(method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        call(b"\xff\xff\xff\xff\x0f", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert "does not decode" in info.value.details()


@pytest.mark.slow
def test_over_long_ids_and_bad_timestamps_are_refused_naming_the_field(server):
    channel = grpc.insecure_channel(server.url, options=[("grpc.max_send_message_length", 64 << 20)])
    commerce = commerce_pb2_grpc.CommerceStub(channel)
    for _ in range(5):
        with pytest.raises(grpc.RpcError) as info:
            commerce.Recommend(commerce_pb2.RecommendRequest(user_id=LONG, request_id="r1"), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith("user_id: 1048576 characters") and len(info.value.details()) < 300
    with pytest.raises(grpc.RpcError) as info:  # the log line of this failure must not carry the id either
        commerce.Recommend(commerce_pb2.RecommendRequest(user_id="u1", request_id=LONG), timeout=30)
    assert info.value.details().startswith("request_id: 1048576 characters")
    with pytest.raises(grpc.RpcError) as info:  # over max_message_bytes: refused before it is read
        commerce.Recommend(commerce_pb2.RecommendRequest(user_id=BIG), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as info:
        commerce.QuotePrice(commerce_pb2.PriceRequest(product_id="p" * 20_000), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and info.value.details().startswith("product_id:")
    with pytest.raises(grpc.RpcError) as info:
        commerce.GetFeatures(commerce_pb2.FeaturesRequest(entity="user", entity_ids=["u1"],
                                                          as_of={"seconds": 1, "nanos": -5}), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and info.value.details().startswith("as_of.nanos")
    assert LONG[:1000] not in server.log(), "the log quotes the whole id"
    health = channel.unary_unary("/grpc.health.v1.Health/Check",
                                 request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                                 response_deserializer=health_pb2.HealthCheckResponse.FromString)
    assert health(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.slow
def test_one_bad_event_is_one_reject_and_the_rest_go_in(server):
    commerce = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    batch = commerce_pb2.EventBatch(request_id="b1")
    now = int(time.time())
    for i, (seconds, product) in enumerate(((now, "p1"), (253_402_300_800, "p2"), (now, "p" * 600), (now, "p4"))):
        event = batch.events.add(event_id=f"limits-{i}", event_type="product_view", user_id="u1", session_id="s1")
        event.timestamp.seconds = seconds
        event.payload.product_id = product
    ack = commerce.IngestEvents(batch, timeout=30)
    assert ack.accepted == 2
    assert [(r.index, r.field) for r in ack.rejects] == [(1, "timestamp"), (2, "payload.product_id")]


def test_timestamps_are_written_in_rfc_3339_to_the_ends_of_the_range():
    from hanzo.server.features.events import format_timestamp, parse_timestamp

    for ms in (-62_135_596_800_000, 0, 253_402_300_799_999):
        assert parse_timestamp(format_timestamp(ms)) == ms
    assert format_timestamp(-62_135_596_800_000) == "0001-01-01T00:00:00.000Z"
