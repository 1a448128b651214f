"""`hanzo call RPC JSON`: one Commerce call, the request given and the answer printed as JSON
(proto field names), for trying a server without a gRPC tool. GetFeatures' float32 matrix is
printed as numbers per entity and feature."""
from __future__ import annotations

import argparse
import json

from .common import CommandError, add_command


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "call", "one Commerce call: the request as JSON, the answer printed as JSON")
    parser.add_argument("rpc", help="Recommend, Search, ScoreFraud, QuotePrice, PlanInventory, ScoreCustomers, "
                                    "GetFeatures or IngestEvents")
    parser.add_argument("request", nargs="?", default="{}", help="the request as JSON, proto field names")
    parser.add_argument("--url", default="127.0.0.1:50051", help="a running server")
    parser.add_argument("--timeout", type=float, default=10.0, help="the call's deadline in seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format, message_factory

    from hanzo.loadtest.targets import parse_request
    from hanzo.v1 import commerce_pb2

    service = commerce_pb2.DESCRIPTOR.services_by_name["Commerce"]
    method = service.methods_by_name.get(args.rpc)
    if method is None:
        raise CommandError(f"{args.rpc!r} is not a Commerce RPC ({', '.join(sorted(service.methods_by_name))})")
    try:
        body = json.loads(args.request)
    except json.JSONDecodeError as exc:
        raise CommandError(f"the request is not JSON: {exc}") from None
    try:
        request = parse_request(message_factory.GetMessageClass(method.input_type), body, "the request")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    answer_type = message_factory.GetMessageClass(method.output_type)
    with grpc.insecure_channel(args.url) as channel:
        call = channel.unary_unary(f"/{service.full_name}/{args.rpc}", request_serializer=type(request).SerializeToString,
                                   response_deserializer=answer_type.FromString)
        try:
            answer = call(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            raise CommandError(f"{exc.code().name}: {exc.details()}") from None
    printed = json_format.MessageToDict(answer, preserving_proto_field_name=True)
    if args.rpc == "GetFeatures":
        printed = _features(answer, printed)
    print(json.dumps(printed, indent=1))
    return 0


def _features(answer, printed: dict) -> dict:
    """The matrix as {entity: {feature: value or null where missing}}."""
    import numpy as np

    columns = list(answer.columns)
    values = np.frombuffer(answer.values, "<f4").reshape(len(answer.entity_ids), len(columns))
    missing = np.frombuffer(answer.missing, np.uint8).reshape(values.shape).astype(bool)
    printed.pop("values", None)
    printed.pop("missing", None)
    printed.pop("columns", None)
    printed["features"] = {entity: {c: (None if missing[i, j] else round(float(values[i, j]), 6))
                                    for j, c in enumerate(columns)} for i, entity in enumerate(answer.entity_ids)}
    return printed
