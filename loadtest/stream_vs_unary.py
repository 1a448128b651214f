"""ModelStreamInfer beside unary ModelInfer for the same model in the same run: Triton's
`simple` (two INT32 [1, 16] inputs), an open loop (Poisson at `--rate`, latency from each
call's due time) and a closed loop (`--concurrency` requests outstanding: the throughput),
unary through the usual load generator, streamed on one bidirectional stream whose requests
carry their sequence number as id.

    python -m hanzo.loadtest.stream_vs_unary --out loadtest/reports/stream-vs-unary.json
        [--workdir DIR] [--rate 500] [--seconds 20] [--concurrency 8] [--server-cpus 0 --client-cpus 1]"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import grpc
import numpy as np
import uvloop
from tritonclient.grpc import service_pb2 as pb

from .fuzz_server import start_demo, stop
from .http_vs_grpc import comparison_arguments, grpc_request
from .openloop import LoadSpec, new_histogram, parse_cpus, pinned, run_load
from .overload import settle
from .reports import write_report
from .runner import summarize
from .targets import KSERVE_INFER

STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"


def _requests(count: int) -> list[bytes]:
    template = pb.ModelInferRequest.FromString(grpc_request())
    out = []
    for i in range(count):
        template.id = str(i)
        out.append(template.SerializeToString())
    return out


async def _stream(url: str, mode: str, rate: float, concurrency: int, seconds: float, warmup: float) -> dict:
    total = int(rate * (seconds + warmup) * 1.2) + concurrency * 10 if mode == "open" else 5_000_000
    bodies = _requests(min(total, 200_000))
    histogram, due_at = new_histogram(), {}
    counts = {"sent": 0, "ok": 0, "errors": 0}
    async with grpc.aio.insecure_channel(url) as channel:
        call = channel.stream_stream(STREAM)()
        start = time.perf_counter_ns()
        measure_from, end = start + int(warmup * 1e9), start + int((warmup + seconds) * 1e9)
        window = asyncio.Semaphore(concurrency if mode == "closed" else 1 << 30)

        async def write() -> None:
            rng, due, i = np.random.default_rng(0), start, 0
            while due < end and i < len(bodies):
                if mode == "open":
                    wait = (due - time.perf_counter_ns()) / 1e9
                    if wait > 0:
                        await asyncio.sleep(wait)
                else:
                    await window.acquire()
                    due = time.perf_counter_ns()
                due_at[str(i)] = due
                await call.write(bodies[i])
                i += 1
                due += int(rng.exponential(1e9 / rate))
            await call.done_writing()

        writer = asyncio.get_running_loop().create_task(write())
        async for raw in call:
            answer = pb.ModelStreamInferResponse.FromString(raw)
            now = time.perf_counter_ns()
            due = due_at.pop(answer.infer_response.id, None)
            window.release()
            if due is None or due < measure_from:
                continue
            counts["sent"] += 1
            if answer.error_message:
                counts["errors"] += 1
            else:
                counts["ok"] += 1
                histogram.record_value(max((now - due) // 1000, 1))
        await writer
    return {**counts, "throughput_rps": round(counts["ok"] / seconds, 1), "latency_ms": summarize(histogram)}


def main(argv: list[str] | None = None) -> int:
    args = comparison_arguments("stream_vs_unary", __doc__, "/tmp/hanzo-stream-vs-unary", argv)
    client_cpus = parse_cpus(args.client_cpus)
    served = start_demo(args.workdir, "serve-stream.log", ("--no-demo-models",), parse_cpus(args.server_cpus))
    phases = {}
    try:
        settle(served.pid)
        spec = LoadSpec(served.url, KSERVE_INFER, grpc_request(), rate=args.rate, concurrency=args.concurrency,
                        duration_s=args.seconds, warmup_s=2.0, timeout_s=2.0, cpus=client_cpus)
        for mode in ("open", "closed"):
            unary = run_load(spec if mode == "open" else replace(spec, mode="closed"))
            phases[f"unary_{mode}"] = {"sent": unary.sent, "ok": unary.ok, "errors": sum(unary.errors.values()),
                                       "throughput_rps": round(unary.ok / max(unary.elapsed_s, 1e-9), 1),
                                       "latency_ms": summarize(unary.corrected)}
            with pinned(client_cpus):
                phases[f"stream_{mode}"] = uvloop.run(_stream(served.url, mode, args.rate, args.concurrency,
                                                              args.seconds, 2.0))
    finally:
        stop(served.process)
    write_report(args.out, {"model": "simple (INT32 [1, 16] x 2 -> sum, difference)", "rate": args.rate,
                            "seconds": args.seconds, "concurrency": args.concurrency, "streams": 1,
                            "server_cpus": args.server_cpus, "client_cpus": args.client_cpus, "phases": phases})
    for name, phase in phases.items():
        print(f"{name:14s} p50 {phase['latency_ms'].get('p50', 0):7.3f} ms  p99 {phase['latency_ms'].get('p99', 0):7.3f} "
              f"ms  {phase['throughput_rps']:8.1f}/s  errors {phase['errors']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
