"""What one unary call costs a grpc.aio server's CPU, answered or refused: the floor under
any refusal a Python gRPC server can make.

    python -m hanzo.loadtest.call_cost [--seconds 5] [--server-cpu 0] [--client-cpu 1] [--out FILE]

A do-nothing grpc.aio server in a process of its own, pinned to one CPU, is driven flat out by
h2load (a C client, pinned to another CPU, so the client is never the limit). Its calls per
second are the calls one CPU can take in; a call's cost is the inverse. Three handlers:
answered OK; refused RESOURCE_EXHAUSTED by the handler (context.abort, as Hanzo's edge does);
refused by grpc.aio's own `maximum_concurrent_rpcs` while one parked call holds the only
slot (refused before the request body is read). Each mode's status is checked with one real
gRPC call first, since h2load sees only HTTP statuses."""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import grpc

from .h2load import available, run_h2load
from .openloop import pinned
from .reports import print_report
from .targets import free_port

METHOD = "/bench.Floor/Call"
MODES = ("served", "refused_by_handler", "refused_by_grpc_limit")


async def _serve(mode: str, port: int) -> None:
    async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b"ok"

    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded")

    async def park(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(3600)
        return b""

    handler = {"served": answer, "refused_by_handler": refuse, "refused_by_grpc_limit": park}[mode]
    limit = 1 if mode == "refused_by_grpc_limit" else None
    server = grpc.aio.server(maximum_concurrent_rpcs=limit)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Floor", {"Call": grpc.unary_unary_rpc_method_handler(handler)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def _check(url: str, mode: str) -> str:
    """One real call's status. In the limit's mode two calls race for the only slot: one parks
    on it, the other is answered at once, and that answer is the mode's."""
    with grpc.insecure_channel(url) as channel:
        call = channel.unary_unary(METHOD)
        if mode != "refused_by_grpc_limit":
            try:
                call(b"x", timeout=10)
                return "OK"
            except grpc.RpcError as exc:
                return exc.code().name
        futures = [call.future(b"x", timeout=10) for _ in range(2)]
        done = threading.Event()
        for future in futures:
            future.add_done_callback(lambda _: done.set())
        done.wait(10)
        first = next(future for future in futures if future.done())
        for future in futures:
            future.cancel()
        return first.code().name


def measure(mode: str, seconds: float, server_cpu: int, client_cpu: int) -> dict:
    port = free_port()
    server = subprocess.Popen(["taskset", "-c", str(server_cpu), sys.executable, "-m", "hanzo.loadtest.call_cost", "--serve", mode,
                               "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {mode} server did not start")
        url = f"127.0.0.1:{port}"
        code = _check(url, mode)
        with pinned((client_cpu,)):
            result = run_h2load(url, METHOD, b"x", clients=4, streams=32, duration_s=seconds, warmup_s=1)
    finally:
        server.kill()
        server.wait()
    return {"code": code, "calls_per_s": round(result.requests_per_s), "done": result.done,
            "us_per_call": round(1e6 / result.requests_per_s, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.call_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per mode")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also write the report here (with its provenance)")
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve, args.port))
        return {}
    if not available():
        raise SystemExit("h2load is not installed: apt-get install nghttp2-client")
    report = {"server_cpu": args.server_cpu, "client_cpu": args.client_cpu, "seconds": args.seconds,
              "modes": {mode: measure(mode, args.seconds, args.server_cpu, args.client_cpu) for mode in MODES}}
    return print_report(report, args.out)


if __name__ == "__main__":
    main()
