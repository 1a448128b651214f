"""The load generator's HTTP side: the same open and closed loops, histograms and series as the
gRPC loads (loadtest/openloop.py), each call a POST over aiohttp's client (HTTP/1.1 keep-alive,
a pool of `concurrency` connections, or as many as the open loop needs), so HTTP/REST and gRPC
are measured alike. A call is a success on status 200; any other status, a refused connection
or a timeout is an error named by it."""
from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import uvloop

from .floor import ServerProcess
from .openloop import LoadResult, LoadSpec, _Sender, drive_sender, pinned


class _NoChannel:
    """What _Sender asks of a channel, for a sender that makes its own calls."""

    @staticmethod
    def unary_unary(method: str) -> None:
        return None


class HttpSender(_Sender):
    def __init__(self, spec: LoadSpec, session: aiohttp.ClientSession, base: str, headers: dict[str, str],
                 result: LoadResult, measure_from: int) -> None:
        super().__init__(spec, _NoChannel(), result, measure_from)  # type: ignore[arg-type]
        self.session = session
        self.urls = [base + method for _, method, _, _ in spec.kinds()]  # a kind's "method" is its path
        self.headers = {**headers, **({"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {})}
        self.client_timeout = aiohttp.ClientTimeout(total=spec.timeout_s)

    async def one(self, due: int, record: bool) -> None:
        import time

        k, body = self.next_call()
        sent = time.perf_counter_ns()
        try:
            async with self.session.post(self.urls[k], data=body, headers=self.headers,
                                         timeout=self.client_timeout) as answer:
                await answer.read()
                code = None if answer.status == 200 else f"HTTP {answer.status}"
        except asyncio.TimeoutError:
            code = "DEADLINE_EXCEEDED"
        except aiohttp.ClientError as exc:
            code = type(exc).__name__
        if record:
            self.record(k, code, due, sent, time.perf_counter_ns())


async def _drive_http(spec: LoadSpec, headers: dict[str, str]) -> LoadResult:
    limit = spec.concurrency if spec.mode == "closed" else 0  # open loop: as many connections as it needs
    connector = aiohttp.TCPConnector(limit=limit, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        base = f"http://{spec.url}"
        return await drive_sender(spec, lambda result, start: HttpSender(spec, session, base, headers, result,
                                                                         start))


def run_http_load(spec: LoadSpec, headers: dict[str, str] | None = None) -> LoadResult:
    """`spec.url` is host:port of the HTTP port, `spec.method` the path POSTed to, `spec.request`
    the body; one client process (pinned to `spec.cpus`)."""
    spec = replace(spec, processes=1)
    with pinned(spec.cpus):
        return uvloop.run(_drive_http(spec, headers or {}))


def _serve_floor(response: bytes, headers: dict[str, str], port_out, stop) -> None:
    """A do-nothing HTTP server on the same stack as the HTTP port (aiohttp on uvloop): reads
    the body, answers the canned response."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=response, headers=headers)

    async def serve() -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("POST", "/{path:.*}", answer)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_out.put(site._server.sockets[0].getsockname()[1])
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await runner.cleanup()

    uvloop.run(serve())


class HttpFloor(ServerProcess):
    """The HTTP floor in its own process (pinned to `cpus`)."""

    def __init__(self, response: bytes, headers: dict[str, str], cpus: tuple[int, ...] = ()) -> None:
        super().__init__(_pinned_floor, response, headers, cpus)


def _pinned_floor(response: bytes, headers: dict[str, str], cpus: tuple[int, ...], port_out, stop) -> None:
    with pinned(cpus):
        _serve_floor(response, headers, port_out, stop)
