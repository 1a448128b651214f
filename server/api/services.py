"""Services registered on the gRPC server from their descriptors, with request bodies decoded
leniently: gRPC's own decoding failure is UNKNOWN ("Unexpected DecodeError"), so a body that
does not decode reaches the edge as an `Undecodable` and is refused INVALID_ARGUMENT there.
Edge-wrapped methods get their bodies as bytes and decode them after admission control.
Services without an edge (health, reflection) get the same refusal from a thin wrapper."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

if TYPE_CHECKING:
    from .access import Access


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


def add_service(server: grpc.aio.Server, servicer: Any, service_name: str, scopes: Mapping[str, str] | str,
                access: "Access | None" = None, guard: bool = False, audited: frozenset[str] = frozenset()) -> dict:
    """Register every method of `service_name` (found in the default descriptor pool) on
    `server`, each handled by the servicer's method of the same name, behind `access` with the
    scope `scopes` declares for it (one scope for the whole service, or one per method: a method
    without one is a ValueError, so no RPC is registered open by omission). `audited` methods
    are written to the audit log. `guard`: the servicer is not edge-wrapped, so wrap each method
    to refuse an undecodable body itself. A method the edge decodes itself (after admission:
    edge.Edge.wrap) is registered without a deserializer. Returns {full method name: scope}."""
    service = descriptor_pool.Default().FindServiceByName(service_name)
    handlers, declared = {}, {}
    for method in service.methods:
        scope = scopes if isinstance(scopes, str) else scopes.get(method.name)
        full = f"/{service_name}/{method.name}"
        if scope is None:
            raise ValueError(f"{full} declares no scope: give it one where {service_name} is registered")
        declared[full] = scope
        behaviour = getattr(servicer, method.name)
        request_class = GetMessageClass(method.input_type)
        decode = None if getattr(behaviour, "decodes", False) else lenient_decoder(request_class)
        encode = GetMessageClass(method.output_type).SerializeToString
        if guard:
            behaviour = _guard_stream(behaviour) if method.client_streaming else _guard_unary(behaviour)
        if access is not None:
            behaviour = access.guard(full, scope, behaviour, method.client_streaming, method.server_streaming,
                                     method.name in audited, request_class)
        kinds = {(False, False): grpc.unary_unary_rpc_method_handler,
                 (False, True): grpc.unary_stream_rpc_method_handler,
                 (True, False): grpc.stream_unary_rpc_method_handler,
                 (True, True): grpc.stream_stream_rpc_method_handler}
        make = kinds[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(behaviour, request_deserializer=decode, response_serializer=encode)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, handlers),))
    return declared


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
