"""A retrain -> candidate -> promote -> rollback cycle under load: Recommend on the demo world
at a steady open-loop rate while the candidate is promoted (a third of the way in) and rolled
back (two thirds in) through the Admin RPCs.

    python -m hanzo.loadtest.promotion_cycle --out loadtest/reports/promotion-cycle.json
        [--workdir DIR] [--rate 200] [--seconds 30] [--server-cpus 0 --client-cpus 1]

The candidate is the one `hanzo retrain recommend` made from the demo's event log
(loadtest/shadow_cost.py makes it when there is none). Every answer's model_version is kept
with the moment its call was due, so the report says which version served at each moment (per
`--bucket` seconds), when each switch was asked for and answered, and every failed call by
code. The goal: no failed call, and the versions switch once at each step."""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import grpc

from hanzo.v1 import admin_pb2, admin_pb2_grpc, commerce_pb2

from . import targets
from .fuzz_server import start_demo, stop
from .openloop import parse_cpus, pinned
from .overload import settle
from .reports import write_report
from .shadow_cost import demo_with_candidate


async def _cycle(url: str, body: bytes, rate: float, seconds: float) -> tuple[list[tuple[float, str, str]], list]:
    """(due offset, code, version) for every call, and the switches (what, asked at, answered at)."""
    answers: list[tuple[float, str, str]] = []
    switches: list[dict] = []
    async with grpc.aio.insecure_channel(url) as channel:
        call = channel.unary_unary("/hanzo.v1.Commerce/Recommend",
                                   response_deserializer=commerce_pb2.RecommendResponse.FromString)
        admin = admin_pb2_grpc.AdminStub(channel)
        start = time.perf_counter()

        async def one(due: float) -> None:
            try:
                answer = await call(body, timeout=2.0)
                answers.append((due, "OK", answer.model_version))
            except grpc.aio.AioRpcError as exc:
                answers.append((due, exc.code().name, ""))

        async def switch(at: float, what: str) -> None:
            await asyncio.sleep(at)
            asked = time.perf_counter() - start
            if what == "promote":
                report = await admin.PromoteModel(admin_pb2.PromoteModelRequest(model_name="recommend"), timeout=60)
            else:
                report = await admin.RollbackModel(admin_pb2.RollbackModelRequest(model_name="recommend"), timeout=60)
            switches.append({"what": what, "asked_s": round(asked, 3),
                             "answered_s": round(time.perf_counter() - start, 3),
                             "serving_version": report.models[0].serving_version})

        steps = [asyncio.create_task(switch(seconds / 3, "promote")),
                 asyncio.create_task(switch(2 * seconds / 3, "rollback"))]
        pending: set[asyncio.Task] = set()
        n = 0
        while n / rate < seconds:
            due = n / rate
            wait = due - (time.perf_counter() - start)
            if wait > 0:
                await asyncio.sleep(wait)
            task = asyncio.create_task(one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.gather(*steps)
        if pending:
            await asyncio.wait(pending, timeout=5)
    return answers, switches


def _timeline(answers: list[tuple[float, str, str]], bucket: float) -> list[dict]:
    rows: dict[int, dict[str, int]] = {}
    for due, code, version in answers:
        row = rows.setdefault(int(due / bucket), {})
        key = f"v{version}" if code == "OK" else code
        row[key] = row.get(key, 0) + 1
    return [{"from_s": round(b * bucket, 3), **rows[b]} for b in sorted(rows)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.promotion_cycle",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-shadow-cost"))
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--bucket", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=3, help="the candidate's training passes, if it is made")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    candidate = demo_with_candidate(args.workdir, args.epochs)
    served = start_demo(args.workdir, "serve-promotion-cycle.log", (), parse_cpus(args.server_cpus))
    try:
        settle(served.pid)
        body = targets.commerce("Recommend", demo_manifest=args.workdir / "demo_world" / "demo.json").request
        with pinned(parse_cpus(args.client_cpus)):
            answers, switches = asyncio.run(_cycle(served.url, body, args.rate, args.seconds))
    finally:
        stop(served.process)
    failures: dict[str, int] = {}
    for _, code, _ in answers:
        if code != "OK":
            failures[code] = failures.get(code, 0) + 1
    ok = sorted((due, version) for due, code, version in answers if code == "OK")
    runs = [v for i, (_, v) in enumerate(ok) if i == 0 or ok[i - 1][1] != v]
    report = {"rpc": "Recommend", "rate": args.rate, "seconds": args.seconds, "candidate_version": candidate,
              "calls": len(answers), "failed": sum(failures.values()), "failures": failures,
              "versions_in_order": runs, "switches": switches, "timeline": _timeline(answers, args.bucket),
              "goal_no_failed_call": not failures, "goal_one_switch_per_step": len(runs) == 3}
    write_report(args.out, report)
    print(f"{len(answers)} calls, {report['failed']} failed, versions {runs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
