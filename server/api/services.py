"""Services registered on the gRPC server from their descriptors, with request bodies decoded
leniently: gRPC's own decoding failure is UNKNOWN ("Unexpected DecodeError"), so a body that
does not decode reaches the edge as an `Undecodable` and is refused INVALID_ARGUMENT there.
Edge-wrapped methods get their bodies as bytes and decode them after admission control.
Services without an edge (health, reflection) get the same refusal from a thin wrapper."""
from __future__ import annotations

from typing import Any, Callable

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass


class Undecodable:
    """A request body that is not a valid encoding of the method's request message."""

    __slots__ = ("type_name", "error")

    def __init__(self, type_name: str, error: str) -> None:
        self.type_name = type_name
        self.error = error

    def message(self) -> str:
        return f"the request body does not decode as {self.type_name} ({self.error[:120]})"


def lenient_decoder(message_class: type) -> Callable[[bytes], Any]:
    parse = message_class.FromString
    name = message_class.DESCRIPTOR.full_name

    def decode(body: bytes) -> Any:
        try:
            return parse(body)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            return Undecodable(name, str(exc) or type(exc).__name__)

    return decode


def add_service(server: grpc.aio.Server, servicer: Any, service_name: str, guard: bool = False) -> None:
    """Register every method of `service_name` (found in the default descriptor pool) on
    `server`, each handled by the servicer's method of the same name. `guard`: the servicer is
    not edge-wrapped, so wrap each method to refuse an undecodable body itself. A method the
    edge decodes itself (after admission: edge.Edge.wrap) is registered without a deserializer."""
    service = descriptor_pool.Default().FindServiceByName(service_name)
    handlers = {}
    for method in service.methods:
        behaviour = getattr(servicer, method.name)
        decode = None if getattr(behaviour, "decodes", False) else lenient_decoder(GetMessageClass(method.input_type))
        encode = GetMessageClass(method.output_type).SerializeToString
        if method.client_streaming:
            behaviour = _guard_stream(behaviour) if guard else behaviour
            make = (grpc.stream_stream_rpc_method_handler if method.server_streaming
                    else grpc.stream_unary_rpc_method_handler)
        else:
            behaviour = _guard_unary(behaviour) if guard else behaviour
            make = (grpc.unary_stream_rpc_method_handler if method.server_streaming
                    else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = make(behaviour, request_deserializer=decode, response_serializer=encode)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, handlers),))


def _guard_unary(behaviour: Callable) -> Callable:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message())
        return await behaviour(request, context)

    return guarded


def _guard_stream(behaviour: Callable) -> Callable:
    async def guarded(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        async def decoded():
            async for request in requests:
                if isinstance(request, Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message())
                yield request

        async for response in behaviour(decoded(), context):
            yield response

    return guarded
