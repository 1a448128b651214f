"""What admission control costs a call, and what a refusal costs: a micro-benchmark.

    python -m hanzo.loadtest.admission_bench [--calls 200000] [--grpc-calls 20000] [--out FILE]

1. The gate alone: admit + release of a call that goes straight in.
2. The edge, in process (no gRPC): a Recommend call decoded and answered by a do-nothing
   handler without admission control, the same call admitted, and refused RESOURCE_EXHAUSTED
   at the gate.
3. Over gRPC on loopback, client and server in this one process (so the figure is all the
   CPU a call costs both sides): served by the do-nothing handler, against refused.
Prints one JSON object (and writes it with --out); the figures are per call."""
from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import grpc

from hanzo.v1 import commerce_pb2

from ..server.api.admission import Admission, AdmissionConfig
from ..server.api.edge import Edge
from ..server.api.latency import LatencyRecorder
from .reports import print_report

METHOD = "/hanzo.v1.Commerce/Recommend"
BODY = commerce_pb2.RecommendRequest(request_id="r-1", user_id="u-12345", k=10).SerializeToString()
ANSWER = commerce_pb2.RecommendResponse(request_id="r-1", model_version="1")


class _Context:
    """The parts of grpc.aio.ServicerContext the edge uses, doing nothing."""

    def done(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.1

    def add_done_callback(self, callback: Any) -> None:
        pass

    async def abort(self, code: grpc.StatusCode, text: str) -> None:
        raise _Aborted()


class _Aborted(Exception):
    pass


def _edge(refuse: bool | None) -> tuple[Edge, asyncio.Event]:
    """An edge whose Recommend gate is held full by one parked call (`refuse`), open (False),
    or without admission control (None)."""
    config = AdmissionConfig(initial_limit=1, min_limit=1, queue_size=0) if refuse else AdmissionConfig()
    admission = None if refuse is None else Admission(config)
    return Edge(LatencyRecorder(), admission=admission), asyncio.Event()


def _wrapped(edge: Edge, parked: asyncio.Event) -> Any:
    async def recommend(request: Any, context: Any) -> Any:
        if request.user_id == "park":
            await parked.wait()
        return ANSWER

    return edge.wrap(METHOD, recommend, request_class=commerce_pb2.RecommendRequest)


def bench_gate(calls: int) -> float:
    gate = Admission(AdmissionConfig()).gate(METHOD)
    context = _Context()
    perf = time.perf_counter_ns
    start = perf()
    for _ in range(calls):
        gate.admit(context)
        now = perf()
        gate.release(1_000_000, now)
    return (perf() - start) / calls


async def bench_edge(calls: int, refuse: bool | None) -> float:
    edge, parked = _edge(refuse)
    call = _wrapped(edge, parked)
    context = _Context()
    park = asyncio.ensure_future(call(commerce_pb2.RecommendRequest(user_id="park").SerializeToString(), context))
    await asyncio.sleep(0)
    start = time.perf_counter_ns()
    for _ in range(calls):
        try:
            await call(BODY, context)
        except _Aborted:
            pass
    elapsed = time.perf_counter_ns() - start
    parked.set()
    await park
    return elapsed / calls


async def bench_grpc(calls: int, refuse: bool, concurrency: int = 32) -> tuple[float, dict[str, int]]:
    edge, parked = _edge(refuse)
    handler = grpc.unary_unary_rpc_method_handler(_wrapped(edge, parked), request_deserializer=None,
                                                  response_serializer=commerce_pb2.RecommendResponse.SerializeToString)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("hanzo.v1.Commerce",
                                                                          {"Recommend": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    codes: dict[str, int] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        park = asyncio.ensure_future(stub(commerce_pb2.RecommendRequest(user_id="park").SerializeToString()))
        await stub(BODY, timeout=10) if not refuse else await asyncio.sleep(0.05)

        async def worker(n: int) -> None:
            for _ in range(n):
                try:
                    await stub(BODY, timeout=10)
                    code = "OK"
                except grpc.aio.AioRpcError as exc:
                    code = exc.code().name
                codes[code] = codes.get(code, 0) + 1

        start = time.perf_counter_ns()
        await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
        elapsed = time.perf_counter_ns() - start
        parked.set()
        await park
    await server.stop(0)
    return elapsed / sum(codes.values()), codes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--grpc-calls", type=int, default=20_000)
    parser.add_argument("--out", type=Path, help="also write the report here (with its provenance)")
    args = parser.parse_args(argv)
    report = {"gate_admit_release_ns": round(bench_gate(args.calls))}
    for name, refuse in (("served_without_admission", None), ("served", False), ("refused", True)):
        report[f"edge_{name}_ns"] = round(asyncio.run(bench_edge(args.calls // 4, refuse)))
    for name, refuse in (("served", False), ("refused", True)):
        ns, codes = asyncio.run(bench_grpc(args.grpc_calls, refuse))
        report[f"grpc_{name}_us"] = round(ns / 1000, 1)
        report[f"grpc_{name}_codes"] = codes
    return print_report(report, args.out)


if __name__ == "__main__":
    main()
