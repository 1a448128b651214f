"""One shop's burst against another shop's p99: Recommend on the demo world, the steady shop
(the unnamed one, whose shoppers have their history) at a modest open-loop rate alone, then
the same load while a second shop (`shop-a`) bursts at a high rate beside it.

    python -m hanzo.loadtest.tenant_burst --out loadtest/reports/tenant-burst.json
        [--workdir DIR] [--steady-rate 100] [--burst-rate 2000] [--seconds 20]
        [--server-cpus 0 --client-cpus 1]

The server runs pinned to its CPUs with admission control as configured by default (the
merchants' shares of each RPC's queue on); the two loads run in two client processes on the
other CPUs. The report gives the steady shop's p50 / p99 / p99.9 alone and during the burst
(from each call's due time), its failures, and the burst's answers by status code. The
issue's goal: the steady shop's p99 during the burst within 1.5x of its p99 alone."""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from dataclasses import replace
from pathlib import Path

from hanzo.v1 import commerce_pb2

from . import targets
from .fuzz_server import start_demo, stop
from .openloop import LoadResult, LoadSpec, parse_cpus, run_load
from .overload import settle
from .reports import write_report

BURSTING = "shop-a"


def _as_merchant(bodies: tuple[bytes, ...], merchant: str) -> tuple[bytes, ...]:
    out = []
    for body in bodies:
        request = commerce_pb2.RecommendRequest.FromString(body)
        request.merchant_id = merchant
        out.append(request.SerializeToString())
    return tuple(out)


def _summary(result: LoadResult) -> dict:
    h = result.corrected
    return {"sent": result.sent, "ok": result.ok, "errors": result.errors,
            "achieved_rps": round(result.sent / result.elapsed_s, 1),
            "p50_ms": round(h.get_value_at_percentile(50) / 1000, 3),
            "p99_ms": round(h.get_value_at_percentile(99) / 1000, 3),
            "p999_ms": round(h.get_value_at_percentile(99.9) / 1000, 3)}


def _burst(spec: LoadSpec, out) -> None:
    out.put(run_load(spec).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-tenant-burst"))
    parser.add_argument("--steady-rate", type=float, default=100.0)
    parser.add_argument("--burst-rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--deadline", type=float, default=0.1, help="the burst's per-call deadline (s)")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--config", type=Path, help="the server's TOML file ([admission] settings to compare)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    extra = ("--config", str(args.config.resolve())) if args.config else ()
    served = start_demo(args.workdir, "serve-tenant-burst.log", extra, parse_cpus(args.server_cpus))
    try:
        settle(served.pid)
        target = targets.commerce("Recommend", demo_manifest=args.workdir / "demo_world" / "demo.json")
        steady = LoadSpec(served.url, target.method, target.request, requests=target.requests, rate=args.steady_rate,
                          duration_s=args.seconds, warmup_s=2.0, timeout_s=1.0, cpus=parse_cpus(args.client_cpus))
        print("the steady shop alone", file=sys.stderr)
        alone = run_load(steady)
        burst = replace(steady, requests=_as_merchant(target.requests, BURSTING), rate=args.burst_rate,
                        timeout_s=args.deadline, seed=1, duration_s=args.seconds + 4.0, warmup_s=0.0)
        out = mp.get_context("spawn").Queue()
        process = mp.get_context("spawn").Process(target=_burst, args=(burst, out), daemon=True)
        print(f"the steady shop beside {BURSTING}'s burst at {args.burst_rate:g}/s", file=sys.stderr)
        process.start()
        beside = run_load(replace(steady, warmup_s=4.0))  # measured once the burst is under way
        bursting = LoadResult.decode(out.get(timeout=args.seconds * 3 + 120))
        process.join(10)
    finally:
        stop(served.process)
    a, b = _summary(alone), _summary(beside)
    report = {"rpc": "Recommend", "steady_rate": args.steady_rate, "burst_rate": args.burst_rate,
              "seconds": args.seconds, "burst_deadline_s": args.deadline, "server_cpus": args.server_cpus,
              "client_cpus": args.client_cpus, "steady_alone": a, "steady_beside_burst": b,
              "burst": {**_summary(bursting), "codes": bursting.errors},
              "p99_ratio": round(b["p99_ms"] / a["p99_ms"], 3) if a["p99_ms"] else None}
    report["goal_p99_within_1_5x"] = report["p99_ratio"] is not None and report["p99_ratio"] <= 1.5
    write_report(args.out, report)
    print(report, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
