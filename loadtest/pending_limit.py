"""Whether grpcio's core refuses calls that wait for the application, before Python sees them.

    python -m hanzo.loadtest.pending_limit [--calls 300] [--out FILE]

gRPC's core keeps the calls that arrived before the application asked for one in a pending
list, and has channel arguments that bound it (`grpc.server.max_pending_requests`, with a
hard limit): past the bound a call is refused RESOURCE_EXHAUSTED in C, which would cost the
server a small part of what a refusal made in Python does (loadtest/call_cost.py). Here a
grpc.aio server whose handler blocks its event loop for 10 ms, so that calls pile up in that
list, is sent `--calls` calls at once, without and with the bound (10, hard 20), and with the
bound under the promise-based server transport experiment (GRPC_EXPERIMENTS). Each setting
runs in a process of its own (the experiments are read at import). The report gives each
setting's status codes: a bound the core honours shows RESOURCE_EXHAUSTED."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from .reports import print_report

BOUND = (("grpc.server.max_pending_requests", 10), ("grpc.server.max_pending_requests_hard_limit", 20))
SETTINGS = {
    "no_bound": ((), ""),
    "bound": (BOUND, ""),
    "bound_promise_transport": (BOUND, "promise_based_http2_server_transport"),
}


async def _one_setting(options: tuple, calls: int) -> dict:
    import grpc
    from grpc import aio

    async def handler(request: bytes, context) -> bytes:
        time.sleep(0.01)  # blocks the loop on purpose: new calls wait in the core's pending list
        return b"ok"

    server = aio.server(options=list(options))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "bench.Pending", {"Call": grpc.unary_unary_rpc_method_handler(handler)})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/bench.Pending/Call")

            async def one() -> str:
                try:
                    await call(b"x", timeout=30)
                    return "OK"
                except aio.AioRpcError as exc:
                    return exc.code().name

            started = time.perf_counter()
            codes = Counter(await asyncio.gather(*(one() for _ in range(calls))))
            return {"codes": dict(codes), "seconds": round(time.perf_counter() - started, 2)}
    finally:
        await server.stop(0)


def _run_child(name: str, calls: int) -> dict:
    options, experiments = SETTINGS[name]
    env = {**os.environ, "GRPC_EXPERIMENTS": experiments} if experiments else dict(os.environ)
    out = subprocess.run([sys.executable, "-m", __spec__.name, "--child", name, "--calls", str(calls)],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    return {"options": dict(options), "grpc_experiments": experiments, **json.loads(out.stdout.splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.pending_limit", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", choices=sorted(SETTINGS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(_one_setting(SETTINGS[args.child][0], args.calls))))
        return 0
    import grpc

    settings = {name: _run_child(name, args.calls) for name in SETTINGS}
    honoured = any(s["codes"].get("RESOURCE_EXHAUSTED") for s in settings.values())
    print_report({"grpcio": grpc.__version__, "calls": args.calls, "handler_blocks_ms": 10,
                  "settings": settings, "bound_honoured": honoured}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
