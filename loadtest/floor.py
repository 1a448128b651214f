"""The floor: a do-nothing gRPC server on the same stack as Hanzo's (grpc.aio on uvloop) that
parses the request and answers a canned response: what the transport alone costs, measured
in the same run as the real server. Its handler goes through Hanzo's own edge wrapper, so its
server-side histogram (served on the same Admin service) is measured exactly as Hanzo's."""
from __future__ import annotations

import asyncio
import multiprocessing as mp

import grpc
import uvloop

from hanzo.server.api.admin import AdminServicer
from hanzo.server.api.edge import wrap
from hanzo.server.api.latency import LatencyRecorder
from hanzo.v1 import admin_pb2_grpc

from .targets import deserializer


def _canned(response: bytes):
    async def answer(request, context):
        return response

    return answer


async def _serve(methods: list[tuple[str, str, bytes]], port_out, stop) -> None:
    latency = LatencyRecorder()
    services: dict[str, dict] = {}
    for method, request_type, response in methods:
        service, name = method.strip("/").split("/")
        services.setdefault(service, {})[name] = grpc.unary_unary_rpc_method_handler(
            wrap(method, _canned(response), latency), request_deserializer=deserializer(request_type),
            response_serializer=None)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(tuple(grpc.method_handlers_generic_handler(service, handlers)
                                          for service, handlers in services.items()))
    admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(latency), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    port_out.put(port)
    while not stop.is_set():
        await asyncio.sleep(0.1)
    await server.stop(0)


def _main(methods, port_out, stop) -> None:
    uvloop.run(_serve(methods, port_out, stop))


class ServerProcess:
    """Context manager: a server `target(*args, port_out, stop)` in its own process, which puts
    its port on `port_out` and serves until `stop` is set; `.url` once entered."""

    def __init__(self, target, *args) -> None:
        ctx = mp.get_context("spawn")
        self._port = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=target, args=(*args, self._port, self._stop), daemon=True)
        self.url = ""

    def __enter__(self):
        self._proc.start()
        self.url = f"127.0.0.1:{self._port.get(timeout=60)}"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


class FloorServer(ServerProcess):
    """The gRPC floor; it answers each (method, request type, canned response) given."""

    def __init__(self, methods: list[tuple[str, str, bytes]]) -> None:
        super().__init__(_main, methods)
