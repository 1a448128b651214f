"""SIGTERM under load, round after round: `hanzo serve` on the demo world (the data folder
reused, so only the first start builds it) takes an open-loop mix of Recommend, GetFeatures,
IngestEvents (fresh event ids) and ModelInfer; at a random moment it gets SIGTERM, and the
load goes on a little longer. Every call is kept with the moment it was sent relative to the
signal and its status code. A clean drain answers every call in flight at the signal OK,
refuses later ones UNAVAILABLE (never CANCELLED), and exits 0; and every event it
acknowledged is there after the restart: ingested again, each counts as a duplicate.

    python -m hanzo.loadtest.drain --rounds 10 --out loadtest/reports/drain.json
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from hanzo.v1 import commerce_pb2

from .fuzz_server import Served, start_demo, stop
from .reports import write_report
from .targets import model_infer

INGEST = "/hanzo.v1.Commerce/IngestEvents"
MIX = (("/hanzo.v1.Commerce/Recommend", 4), ("/hanzo.v1.Commerce/GetFeatures", 2), (INGEST, 2),
       ("/inference.GRPCInferenceService/ModelInfer", 2))
INFER_MODEL = "demo_risk_mlp"
VERIFY_BATCH = 500
EXIT_LIMIT_S = 120.0  # the grace period and the models' retirement, many times over


@dataclass
class Call:
    method: str
    sent: float  # time.monotonic()
    done: float = 0.0
    code: str = ""
    message: str = ""
    events: list[bytes] = field(default_factory=list)  # IngestEvents: each event, serialized
    rejected: set[int] = field(default_factory=set)


class Bodies:
    """The request of each kind of call; IngestEvents gets fresh event ids every time."""

    def __init__(self, served: Served, rng: random.Random, round_no: int) -> None:
        self.rng = rng
        self.round = round_no
        self.user = served.demo.get("user_id", "u00001")
        self.product = served.demo.get("product_id", "p00001")
        self.count = 0
        self.fixed = {
            "/hanzo.v1.Commerce/Recommend": commerce_pb2.RecommendRequest(user_id=self.user, k=10).SerializeToString(),
            "/hanzo.v1.Commerce/GetFeatures": commerce_pb2.FeaturesRequest(
                entity="user", entity_ids=[self.user]).SerializeToString(),
            "/inference.GRPCInferenceService/ModelInfer": model_infer(served.url, INFER_MODEL).request,
        }

    def body(self, method: str) -> tuple[bytes, list[bytes]]:
        if method != INGEST:
            return self.fixed[method], []
        batch = commerce_pb2.EventBatch(request_id=f"drain-{self.round}-{self.count}")
        for _ in range(self.rng.choice((1, 2, 5, 20, 50))):  # bigger batches stay in flight longer
            self.count += 1
            event = batch.events.add(event_id=f"drain-{os.getpid()}-{self.round}-{self.count}",
                                     session_id=f"drain-s{self.round}", user_id=self.user)
            event.timestamp.GetCurrentTime()
            if self.rng.random() < 0.5:
                event.event_type = "page_view"
            else:
                event.event_type = "product_view"
                event.payload.product_id = self.product
        return batch.SerializeToString(), [e.SerializeToString() for e in batch.events]


async def drive(served: Served, bodies: Bodies, rng: random.Random, rate: float, before_s: float, after_s: float,
                deadline_s: float) -> tuple[list[Call], float, float | None]:
    """Open-loop Poisson arrivals; SIGTERM `before_s` into the load, the load on for `after_s`
    more. Returns every call, the moment of the signal and the moment the server exited (None
    if it still runs when the last call is answered)."""
    channel = grpc.aio.insecure_channel(served.url)
    stubs = {m: channel.unary_unary(m, request_serializer=None, response_deserializer=None) for m, _ in MIX}
    methods, weights = [m for m, _ in MIX], [w for _, w in MIX]
    calls: list[Call] = []
    tasks = []

    async def one(call: Call, body: bytes) -> None:
        try:
            answer = await stubs[call.method](body, timeout=deadline_s)
            call.code = "OK"
            if call.method == INGEST:
                call.rejected = {r.index for r in commerce_pb2.IngestAck.FromString(answer).rejects}
        except grpc.aio.AioRpcError as exc:
            call.code, call.message = exc.code().name, (exc.details() or "")[:200]
        call.done = time.monotonic()

    async def watch_exit() -> float | None:
        while served.process.poll() is None:
            if all(t.done() for t in tasks) and time.monotonic() - sigterm_at > after_s:
                return None
            await asyncio.sleep(0.005)
        return time.monotonic()

    start = time.monotonic()
    due, sigterm_at, exit_watch = start, None, None
    while True:
        now = time.monotonic()
        if sigterm_at is None and now - start >= before_s:
            os.kill(served.pid, signal.SIGTERM)
            sigterm_at = time.monotonic()
            exit_watch = asyncio.create_task(watch_exit())
        if sigterm_at is not None and now - sigterm_at >= after_s:
            break
        due += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        method = rng.choices(methods, weights)[0]
        body, events = bodies.body(method)
        call = Call(method, time.monotonic(), events=events)
        calls.append(call)
        tasks.append(asyncio.create_task(one(call, body)))
    await asyncio.gather(*tasks)
    exited_at = await exit_watch
    await channel.close()
    return calls, sigterm_at, exited_at


def verify_events(served: Served, acknowledged: list[bytes]) -> dict:
    """Ingest the acknowledged events again: each one the server kept counts as a duplicate;
    one accepted anew was lost."""
    channel = grpc.insecure_channel(served.url)
    ingest = channel.unary_unary(INGEST, request_serializer=None, response_deserializer=commerce_pb2.IngestAck.FromString)
    result = Counter()
    try:
        for start in range(0, len(acknowledged), VERIFY_BATCH):
            batch = commerce_pb2.EventBatch(request_id="drain-verify")
            for raw in acknowledged[start:start + VERIFY_BATCH]:
                batch.events.add().ParseFromString(raw)
            ack = ingest(batch.SerializeToString(), timeout=30)
            result.update(duplicates=ack.duplicates, accepted_again=ack.accepted, rejected=len(ack.rejects))
    finally:
        channel.close()
    return {"acknowledged": len(acknowledged), "duplicates": result["duplicates"],
            "accepted_again (lost)": result["accepted_again"], "rejected": result["rejected"]}


def summarize(calls: list[Call], sigterm_at: float) -> dict:
    """Counts by code: calls answered before the signal, in flight at it, sent after it."""
    groups: dict[str, Counter] = defaultdict(Counter)
    by_method: dict[str, Counter] = defaultdict(Counter)
    not_ok_in_flight, cancelled, messages = [], [], Counter()
    for call in calls:
        phase = "answered_before" if call.done < sigterm_at else (
            "in_flight_at_sigterm" if call.sent < sigterm_at else "sent_after_sigterm")
        groups[phase][call.code] += 1
        by_method[f"{phase} {call.method}"][call.code] += 1
        sample = {"method": call.method, "sent_s": round(call.sent - sigterm_at, 3),
                  "answered_s": round(call.done - sigterm_at, 3), "code": call.code, "message": call.message}
        if call.code != "OK":
            messages[f"{phase} {call.code}: {call.message[:120]}"] += 1
        if phase == "in_flight_at_sigterm" and call.code != "OK" and len(not_ok_in_flight) < 20:
            not_ok_in_flight.append(sample)
        if call.code == "CANCELLED" and len(cancelled) < 20:
            cancelled.append(sample)
    return {"calls": len(calls), **{k: dict(v) for k, v in groups.items()},
            "by_method": {k: dict(v) for k, v in sorted(by_method.items())},
            "cancelled": sum(c.code == "CANCELLED" for c in calls), "cancelled_samples": cancelled,
            "in_flight_not_ok": sum(v for k, v in groups["in_flight_at_sigterm"].items() if k != "OK"),
            "in_flight_not_ok_samples": not_ok_in_flight, "messages": dict(messages.most_common(10)),
            "last_ok_s": round(max((c.done - sigterm_at for c in calls if c.code == "OK"), default=0.0), 3)}


def acknowledged_events(calls: list[Call]) -> list[bytes]:
    return [raw for c in calls if c.method == INGEST and c.code == "OK"
            for i, raw in enumerate(c.events) if i not in c.rejected]


def exited(served: Served, timeout: float) -> int | None:
    """The exit status once the server has drained by itself; killed (None) past `timeout`.
    No second SIGTERM: that would cut the drain short."""
    try:
        return served.process.wait(timeout)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait()
        return None


def run(workdir: Path, rounds: int, rate: float, before: tuple[float, float], after_s: float, deadline_s: float,
        seed: int) -> dict:
    rng = random.Random(seed)
    results, pending = [], []
    for n in range(1, rounds + 2):  # one start more than rounds: the last round's events are checked
        served = start_demo(workdir, f"serve-{n}.log")
        try:
            if pending:
                results[-1]["events"] = verify_events(served, pending)
            if n > rounds:
                break
            before_s = rng.uniform(*before)
            calls, sigterm_at, exited_at = asyncio.run(drive(served, Bodies(served, rng, n), rng, rate, before_s, after_s,
                                                  deadline_s))
            status = exited(served, EXIT_LIMIT_S)
            result = {"round": n, "sigterm_after_s": round(before_s, 2), "exit_status": status,
                      "exit_after_sigterm_s": round((exited_at or time.monotonic()) - sigterm_at, 3),
                      **summarize(calls, sigterm_at)}
            results.append(result)
            pending = acknowledged_events(calls)
            print(f"round {n}: {result['calls']} calls, in flight at SIGTERM {result.get('in_flight_at_sigterm')}, "
                  f"after {result.get('sent_after_sigterm')}, exit {status}", file=sys.stderr)
        finally:
            stop(served.process)
    return {"rounds": results, "verdict": verdict(results)}


def verdict(rounds: list[dict]) -> dict:
    return {"cancelled": sum(r["cancelled"] for r in rounds),
            "in_flight_not_ok": sum(r["in_flight_not_ok"] for r in rounds),
            "in_flight": sum(sum(r.get("in_flight_at_sigterm", {}).values()) for r in rounds),
            "events_lost": sum(r.get("events", {}).get("accepted_again (lost)", 0) for r in rounds),
            "events_acknowledged": sum(r.get("events", {}).get("acknowledged", 0) for r in rounds),
            "nonzero_exits": sum(r["exit_status"] != 0 for r in rounds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.drain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="calls/s, open loop (default 200)")
    parser.add_argument("--before", type=float, nargs=2, default=(1.5, 5.0), metavar=("MIN", "MAX"),
                        help="SIGTERM this many seconds into the load, uniformly at random (default 1.5 5)")
    parser.add_argument("--after", type=float, default=3.0, help="seconds of load after SIGTERM (default 3)")
    parser.add_argument("--deadline", type=float, default=15.0, help="seconds, every call (default 15)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="the demo world and data folder, reused between rounds "
                                                     "(default: a temporary folder, removed at the end)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hanzo-drain-"))
    try:
        report = run(workdir, args.rounds, args.rate, tuple(args.before), args.after, args.deadline, args.seed)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report["settings"] = {k: v for k, v in vars(args).items() if k not in ("out", "workdir")}
    write_report(args.out, report)
    print(report["verdict"])
    ok = report["verdict"]
    return 0 if not (ok["cancelled"] or ok["in_flight_not_ok"] or ok["events_lost"] or ok["nonzero_exits"]) else 1


if __name__ == "__main__":
    sys.exit(main())
