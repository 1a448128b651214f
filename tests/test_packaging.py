"""The install is one import root and a gRPC family that agrees with tritonclient."""
import importlib.util
from importlib.metadata import PackageNotFoundError, version

import pytest
from helpers import SHARED_DATA, shared_data


def test_grpc_family_is_pinned_together():
    versions = {name: version(name) for name in ("grpcio", "grpcio-reflection", "grpcio-health-checking")}
    try:
        versions["grpcio-tools"] = version("grpcio-tools")
    except PackageNotFoundError:
        pass
    assert len(set(versions.values())) == 1, versions
    assert version("protobuf").split(".")[0] == "6", "tritonclient 2.73 needs protobuf 6"
    assert version("tritonclient") == "2.73.0"


def test_one_import_root():
    import hanzo

    assert not hasattr(hanzo, "__file__") or hanzo.__file__ is None  # a namespace package
    for name in ("hanzo.server", "hanzo.training", "hanzo.loadtest", "hanzo.v1.commerce_pb2", "hanzo._native"):
        assert importlib.util.find_spec(name) is not None, name
    for plain in ("server", "loadtest", "training"):
        spec = importlib.util.find_spec(plain)
        assert spec is None or "site-packages" not in (spec.origin or ""), plain


def test_commerce_contract_declares_every_rpc():
    from hanzo.v1 import commerce_pb2

    service = commerce_pb2.DESCRIPTOR.services_by_name["Commerce"]
    assert set(service.methods_by_name) == {"Recommend", "Search", "ScoreFraud", "QuotePrice", "PlanInventory",
                                             "ScoreCustomers", "GetFeatures", "IngestEvents"}
    for name in ("RecommendRequest", "SearchRequest", "FraudRequest", "PriceRequest", "InventoryRequest",
                 "CustomersRequest", "FeaturesRequest", "EventBatch"):
        fields = commerce_pb2.DESCRIPTOR.message_types_by_name[name].fields_by_name
        assert "merchant_id" in fields and "request_id" in fields, name


@pytest.mark.parametrize("path", [pytest.param(name, marks=shared_data(name, "events.jsonl.gz"))
                                  for name in ("cdnow", "fraud_ulb", "groceries", "tafeng", "yoochoose")])
def test_every_canonical_event_maps_to_the_event_message(path):
    """JSONL events and Event messages map one to one (../shared/data)."""
    import gzip
    import json
    from google.protobuf import json_format

    from hanzo.v1 import commerce_pb2

    events = SHARED_DATA / path / "events.jsonl.gz"
    with gzip.open(events, "rt") as lines:
        for i, line in enumerate(lines):
            if i == 2000:
                break
            record = json.loads(line)
            message = json_format.ParseDict(record, commerce_pb2.Event())
            back = json_format.MessageToDict(message, preserving_proto_field_name=True)
            assert back["event_id"] == record["event_id"]
            assert set(record["payload"]) <= set(back.get("payload", {})) | {k for k, v in record["payload"].items()
                                                                             if v in ({}, [], None)}
