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
from hanzo.server.latency import LatencyRecorder
from hanzo.v1 import admin_pb2_grpc

from .targets import deserializer


async def _serve(method: str, request_type: str, response: bytes, port_out, stop) -> None:
    service, name = method.strip("/").split("/")
    parse = deserializer(request_type)

    async def answer(request, context):
        return response

    latency = LatencyRecorder()
    handler = grpc.unary_unary_rpc_method_handler(wrap(method, answer, latency), request_deserializer=parse,
                                                  response_serializer=None)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {name: handler}),))
    admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(latency), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    port_out.put(port)
    while not stop.is_set():
        await asyncio.sleep(0.1)
    await server.stop(0)


def _main(method, request_type, response, port_out, stop) -> None:
    uvloop.run(_serve(method, request_type, response, port_out, stop))


class FloorServer:
    """Context manager: a floor server in its own process; `.url` once entered."""

    def __init__(self, method: str, request_type: str, response: bytes) -> None:
        ctx = mp.get_context("spawn")
        self._port = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_main, args=(method, request_type, response, self._port, self._stop),
                                 daemon=True)
        self.url = ""

    def __enter__(self) -> "FloorServer":
        self._proc.start()
        self.url = f"127.0.0.1:{self._port.get(timeout=60)}"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
