"""What a fuzz run calls, learnt from the server itself: every method of every service it
registers (through gRPC reflection, so a new RPC is fuzzed without being listed here; the
descriptors this checkout ships where reflection is off), and the ids its world knows
(demo manifest, catalogue, model repository, feature columns) to mix with random ones."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from hanzo.v1 import commerce_pb2

REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
ENTITIES = ("user", "product", "session", "card", "device", "address")
EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "purchase", "search", "recommendation_shown",
               "recommendation_clicked", "order", "chargeback", "catalog_update", "stock_update", "price_change")
DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BF16", "BYTES")


@dataclass(frozen=True)
class Method:
    path: str  # /package.Service/Method
    service: str
    descriptor: MethodDescriptor

    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def streaming(self) -> tuple[bool, bool]:
        return self.descriptor.client_streaming, self.descriptor.server_streaming


def discover(channel: grpc.Channel, timeout: float = 10.0) -> tuple[list[Method], str]:
    """Every method the server registers, and where the list came from ("reflection" or
    "local descriptors" when the server does not answer reflection)."""
    try:
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
            ProtoReflectionDescriptorDatabase,
        )

        grpc.channel_ready_future(channel).result(timeout=timeout)
        database = ProtoReflectionDescriptorDatabase(channel)
        names = database.get_services()
        pool = descriptor_pool.DescriptorPool(database)
        return _methods(pool.FindServiceByName(n) for n in sorted(names)), "reflection"
    except (grpc.RpcError, grpc.FutureTimeoutError, KeyError, ImportError):
        return _methods(_local_services()), "local descriptors"


def _local_services():
    from grpc_health.v1 import health_pb2
    from hanzo.v1 import admin_pb2
    from tritonclient.grpc import service_pb2

    for module in (service_pb2, commerce_pb2, admin_pb2, health_pb2):
        yield from module.DESCRIPTOR.services_by_name.values()


def _methods(services) -> list[Method]:
    return [Method(f"/{s.full_name}/{m.name}", s.full_name, m) for s in services for m in s.methods]


@dataclass
class Vocabulary:
    """Known values by field name: what the server's world holds, so that some fuzzed calls
    get past the "not found" checks into the code behind them."""
    by_field: dict[str, list] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    metadata: dict[str, object] = field(default_factory=dict)  # model -> ModelMetadataResponse
    demo: dict = field(default_factory=dict)
    world: Path | None = None  # the demo world's folder (demo.json, catalog.jsonl), when known

    def known(self, name: str) -> list:
        return self.by_field.get(name, [])


def vocabulary(channel: grpc.Channel, demo: dict, world: Path | None, methods: list[Method]) -> Vocabulary:
    """Ids from the demo manifest and catalogue (when `world` has them), the ready models and
    their metadata, the feature columns per entity, the service names."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    vocab = Vocabulary(demo=demo, world=world)
    order = demo.get("order") or {}
    users = [demo.get("user_id", "u00001"), order.get("user_id", "u00001"), "u00000", "u00001", "u00599"]
    products = [demo.get("product_id", "p00001"), "p00000", "p00001"] + _catalog_ids(world)
    add = vocab.by_field.setdefault
    for name in ("user_id",):
        add(name, []).extend(users)
    for name in ("product_id", "product_ids", "anchor_product_ids", "exclude_product_ids", "candidate_product_ids"):
        add(name, []).extend(products)
    add("entity_ids", []).extend(users + products[:20] + [order.get("card_id", "card-u00001-0")])
    add("entity", []).extend(ENTITIES)
    add("event_type", []).extend(EVENT_TYPES)
    add("location", []).extend(["ALL", "wh-east", "wh-west", demo.get("location", "wh-east")])
    add("query", []).extend([demo.get("query", "black keyboard"), "keyboard", "blak keybord", "sofa"])
    add("currency", []).extend(["USD", "EUR", "JPY"])
    add("datatype", []).extend(DATATYPES)
    add("merchant_id", []).extend(["", "default", "m1"])
    add("service", []).extend(["", *sorted({m.service for m in methods})])
    for key in ("order_id", "session_id", "card_id", "device_id", "ip", "email", "shipping_address_id",
                "billing_address_id"):
        if order.get(key):
            add(key, []).append(order[key])
    add("placement", []).extend(["HOME", "PRODUCT_PAGE", "CART", "EMAIL"])
    add("map_keys", []).extend(["device", "location", "cost", "current_price", "stock", "days_to_restock",
                                 "avs_match", "cvv_match", "ip_distance_km", "timeout", "binary_data_output",
                                 "priority", "classification", "brand", "color"])
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    try:
        index = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True), timeout=10)
        vocab.models = sorted({m.name for m in index.models})
        for model in vocab.models:
            vocab.metadata[model] = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=model), timeout=10)
    except grpc.RpcError:
        pass
    for name in ("name", "model_name"):
        add(name, []).extend(vocab.models)
    add("feature_names", []).extend(_feature_columns(channel, users[0], products[0]))
    add("file_containing_symbol", []).extend(sorted({m.service for m in methods}))
    return vocab


def _catalog_ids(world: Path | None, limit: int = 50) -> list[str]:
    if world is None:
        return []
    ids = []
    try:
        with open(world / "catalog.jsonl") as lines:
            for line in lines:
                ids.append(json.loads(line)["product_id"])
                if len(ids) >= limit:
                    break
    except (OSError, ValueError, KeyError):
        pass
    return ids


def _feature_columns(channel: grpc.Channel, user: str, product: str) -> list[str]:
    from hanzo.v1 import commerce_pb2_grpc

    stub = commerce_pb2_grpc.CommerceStub(channel)
    names: set[str] = set()
    for entity, ident in (("user", user), ("product", product)):
        try:
            answer = stub.GetFeatures(commerce_pb2.FeaturesRequest(entity=entity, entity_ids=[ident]), timeout=10)
        except grpc.RpcError:
            continue
        names.update(c.split("[")[0] for c in answer.columns)
        names.update(s.name for s in answer.sequences)
    return sorted(names)
