"""`hanzo eval recommend`: the test split scored through a running server over gRPC, as it
would have been served: the events are ingested in time order (the held-out baskets or
clicks left out), and each case asks Recommend at its own moment, once everything before it
is in. Reports the metrics with a bootstrap interval and the share of fallback answers."""
from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np

from hanzo.server.features.formats import read_records
from hanzo.training.eval_client import send_events
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

from .data import next_basket_tasks, next_click_tasks
from hanzo.training.metrics import bootstrap

from .metrics import METRICS


def held_out_events(records: list[dict], kind: str, cases) -> set[str]:
    """Event ids of what the test cases must predict (never ingested)."""
    keys = {case.key for case in cases}
    if kind == "basket":
        starts: dict[tuple[str, str], int] = {}
        for r in records:
            if r["event_type"] == "purchase" and r.get("user_id") in keys:
                key = (r["user_id"], r["session_id"])
                starts[key] = min(starts.get(key, r["timestamp"]), r["timestamp"])
        latest: dict[str, tuple[int, str]] = {}
        for (user, session), start in starts.items():
            if user not in latest or (start, session) > latest[user]:
                latest[user] = (start, session)
        last = {user: session for user, (_, session) in latest.items()}
        return {r["event_id"] for r in records if r["event_type"] == "purchase" and
                last.get(r.get("user_id")) == r["session_id"]}
    last_click: dict[str, dict] = {}
    for r in records:
        if r["event_type"] == "product_view" and r["session_id"] in keys:
            held = last_click.get(r["session_id"])
            if held is None or (r["timestamp"], r["event_id"]) >= (held["timestamp"], held["event_id"]):
                last_click[r["session_id"]] = r
    return {r["event_id"] for r in last_click.values()}


def evaluate(url: str, events: Path, kind: str = "auto", seed: int = 0, batch: int = 1000, log=print) -> dict:
    records = sorted(read_records(events), key=lambda r: (r["timestamp"], r["event_id"]))
    if kind == "auto":
        kind = "basket" if any(r["event_type"] == "purchase" and r.get("user_id") for r in records[:20000]) else \
            "session"
    _, test = next_basket_tasks(events) if kind == "basket" else next_click_tasks(events)
    metrics = ("recall", "ndcg") if kind == "basket" else ("recall", "mrr")
    skip = held_out_events(records, kind, test.cases)
    stream = [r for r in records if r["event_id"] not in skip]
    cases = sorted(test.cases, key=lambda c: (c.as_of, c.key))
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(url, options=[
        ("grpc.max_send_message_length", 64 << 20)]))
    results = {m: np.zeros(len(cases)) for m in metrics}
    fallbacks = 0
    position = 0
    started = time.monotonic()
    vocabulary = test.vocabulary
    for c, case in enumerate(cases):
        pending = []
        while position < len(stream) and stream[position]["timestamp"] <= case.as_of:
            pending.append(stream[position])
            position += 1
        send_events(stub, pending, f"eval-{c}", batch)
        query = commerce_pb2.RecommendRequest(k=test.k, request_id=f"eval-{case.key}")
        if kind == "basket":
            query.user_id = case.key
        else:
            query.session_id = case.key
        answer = stub.Recommend(query, timeout=10)
        fallbacks += answer.fallback
        ranked = [vocabulary.index.get(item.product_id, -1) for item in answer.items]
        for m in metrics:
            results[m][c] = METRICS[m](ranked, case.target, test.k)
        if (c + 1) % 500 == 0:
            log(f"{c + 1}/{len(cases)} cases, {time.monotonic() - started:.0f} s")
    report = {"task": kind, "events": str(events), "cases": len(cases), "k": test.k, "seed": seed,
              "fallback_share": fallbacks / max(len(cases), 1),
              "metrics": {m: {"mean": float(v.mean()), "ci95": list(bootstrap(v, seed=seed))}
                          for m, v in results.items()}}
    return report


def main_report(report: dict) -> str:
    parts = [f"{m}@{report['k']} {v['mean']:.4f} [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}]"
             for m, v in report["metrics"].items()]
    return (f"{report['task']} task, {report['cases']} cases through the server: " + ", ".join(parts) +
            f"; fallback answers {100 * report['fallback_share']:.1f}%")

