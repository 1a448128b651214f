"""What a load hits: one gRPC method and one serialized request, chosen once, so the load
generator only ships bytes. ModelInfer requests are built from the model's metadata; Commerce
requests from JSON (or an example per RPC)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format, message_factory
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hanzo.v1 import commerce_pb2

KSERVE_INFER = "/inference.GRPCInferenceService/ModelInfer"

# An example request per Commerce RPC, for a load that names only the RPC: ids the demo
# marketplace has (`hanzo serve` on an empty repository), replaced by the ones its manifest
# suggests where the demo world is found.
EXAMPLES: dict[str, dict[str, Any]] = {
    "Recommend": {"user_id": "u00001", "placement": "HOME", "k": 10},
    "Search": {"query": "black keyboard", "k": 10},
    "ScoreFraud": {"order": {"order_id": "o1", "user_id": "u00001", "amount": 120.0, "card_id": "card-u00001-0"}},
    "QuotePrice": {"product_id": "p00001", "competitor_prices": [10.5, 11.0]},
    "PlanInventory": {"product_id": "p00001", "location": "wh-east", "horizon_days": 14, "service_level": 0.95,
                      "lead_time_days": 3},
    "GetFeatures": {"entity": "user", "entity_ids": ["u00001"]},
    "ScoreCustomers": {"user_ids": ["u00001"], "horizon_days": 30},
    "IngestEvents": {"events": [{"event_id": "lt-1", "event_type": "page_view", "session_id": "s1"}]},
}


def example(rpc: str, demo_manifest: Path | None = None) -> dict[str, Any]:
    """The example request of `rpc`, with the demo world's own ids where its manifest exists."""
    request = json.loads(json.dumps(EXAMPLES[rpc]))
    if rpc == "IngestEvents":  # now: an event far behind the store's clock would be refused as too late
        request["events"][0]["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        demo = json.loads(Path(demo_manifest).read_text()) if demo_manifest else None
    except (OSError, ValueError):
        demo = None
    if demo:
        ids = {"Recommend": {"user_id": demo["user_id"]}, "Search": {"query": demo["query"]},
               "ScoreFraud": {"order": demo["order"]}, "QuotePrice": {"product_id": demo["product_id"]},
               "PlanInventory": {"product_id": demo["product_id"], "location": demo.get("location", "ALL")},
               "GetFeatures": {"entity_ids": [demo["user_id"]]}, "ScoreCustomers": {"user_ids": [demo["user_id"]]}}
        request.update(ids.get(rpc, {}))
    return request


def parse_request(cls: type, obj: Any, where: str):
    """A request message from JSON-like data; a ValueError naming `where` and the field."""
    try:
        return json_format.ParseDict(obj, cls())
    except json_format.ParseError as exc:
        raise ValueError(f"{where}: {' '.join(str(exc).split())}") from None


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not JSON: {exc}") from None


_NUMPY = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
          "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
          "UINT64": np.uint64, "BOOL": np.bool_}


@dataclass(frozen=True)
class Target:
    method: str  # full gRPC method name
    request: bytes  # one serialized request
    request_type: str  # full protobuf message name, for the floor server's deserializer
    label: str
    requests: tuple[bytes, ...] = ()  # all the bodies, when the load cycles through several


@dataclass(frozen=True)
class Scenario:
    """Several targets loaded together, each call picking one by weight."""
    label: str
    parts: tuple[tuple[Target, float], ...]

    @classmethod
    def single(cls, target: Target) -> "Scenario":
        return cls(target.label, ((target, 1.0),))

    def mix(self) -> tuple[tuple[str, str, tuple[bytes, ...], float], ...]:
        return tuple((t.label, t.method, t.requests or (t.request,), w) for t, w in self.parts)


def scenario_file(path: str, url: str, seed: int = 0) -> Scenario:
    """A JSON scenario: {"name": ..., "mix": [{"rpc": "Recommend", "request_file": "r.jsonl",
    "weight": 6}, {"rpc": "Search", "request": {...}, "weight": 3}, {"model": "demo_risk_mlp",
    "batch": 1, "weight": 1}]}; relative request_file paths are read beside the scenario."""
    spec = json.loads(Path(path).read_text())
    parts, labels = [], set()
    for i, entry in enumerate(spec.get("mix") or ()):
        weight = float(entry.get("weight", 1.0))
        if weight <= 0:
            raise ValueError(f"{path}: mix[{i}].weight must be > 0")
        if "model" in entry:
            target = model_infer(url, entry["model"], int(entry.get("batch", 1)), seed)
        elif "rpc" in entry:
            request_file = entry.get("request_file")
            if request_file and not Path(request_file).is_absolute():
                request_file = str(Path(path).parent / request_file)
            request = json.dumps(entry["request"]) if "request" in entry else None
            target = commerce(entry["rpc"], request, request_file)
        else:
            raise ValueError(f"{path}: mix[{i}] names neither an rpc nor a model")
        if target.label in labels:  # the same RPC twice: tell them apart
            target = Target(target.method, target.request, target.request_type, f"{target.label}#{i}", target.requests)
        labels.add(target.label)
        parts.append((target, weight))
    if not parts:
        raise ValueError(f"{path}: the scenario's mix is empty")
    return Scenario(spec.get("name") or Path(path).stem, tuple(parts))


def model_infer(url: str, model: str, batch: int = 1, seed: int = 0) -> Target:
    """A ModelInfer request of `batch` random rows for every input of `model`."""
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))
    meta = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=model), timeout=30)
    rng = np.random.default_rng(seed)
    request = service_pb2.ModelInferRequest(model_name=model, id="loadtest")
    for tensor in meta.inputs:
        shape = [batch if i == 0 and d == -1 else (d if d > 0 else 1) for i, d in enumerate(tensor.shape)]
        dtype = _NUMPY[tensor.datatype]
        if np.issubdtype(dtype, np.floating):
            data = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            data = rng.random(shape) < 0.5
        else:
            data = rng.integers(0, 1000, shape).astype(dtype)
        request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=shape)
        request.raw_input_contents.append(data.tobytes())
    return Target(KSERVE_INFER, request.SerializeToString(), "inference.ModelInferRequest", f"ModelInfer {model}")


def commerce(rpc: str, request_json: str | None = None, request_file: str | None = None,
             demo_manifest: Path | None = None) -> Target:
    """A Commerce RPC with one request (JSON, or the RPC's example), or the JSON lines of a
    file sent in turn."""
    service = commerce_pb2.DESCRIPTOR.services_by_name["Commerce"]
    method = service.methods_by_name.get(rpc)
    if method is None:
        raise ValueError(f"unknown Commerce RPC {rpc!r} (RPCs: {sorted(service.methods_by_name)})")
    cls = message_factory.GetMessageClass(method.input_type)
    if request_file:
        with open(request_file) as lines:
            bodies = [parse_request(cls, _json(line, f"{request_file}:{n}"), f"{request_file}:{n}").SerializeToString()
                      for n, line in enumerate(lines, 1) if line.strip()]
        if not bodies:
            raise ValueError(f"{request_file} holds no request")
    else:
        obj = _json(request_json, "--request") if request_json else example(rpc, demo_manifest)
        bodies = [parse_request(cls, obj, "--request").SerializeToString()]
    return Target(f"/{service.full_name}/{rpc}", bodies[0], method.input_type.full_name, rpc, tuple(bodies))


def deserializer(request_type: str):
    """The parser of a request type, as a do-nothing server would use it."""
    if request_type == "inference.ModelInferRequest":
        return service_pb2.ModelInferRequest.FromString
    descriptor = commerce_pb2.DESCRIPTOR.message_types_by_name[request_type.split(".")[-1]]
    return message_factory.GetMessageClass(descriptor).FromString


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
