"""`hanzo eval recommend`: the test split scored through a running server over gRPC, as it
would have been served: the events are ingested in time order (the held-out baskets or
clicks left out), and each case asks Recommend either at its own moment, once everything
before it is in (`ask_at="moment"`), or after the whole stream is in, the store's clock at
the last event, as an email batch would (`ask_at="end"`). Reports the metrics with a
bootstrap interval, the share of fallback answers, and beside them the owner's own most
bought (or viewed) products scored on the same cases from the same history: what the server
was given of the owner before the case's moment."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np

from hanzo.server.features.formats import read_records
from hanzo.training.eval_client import send_events
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

from .baselines import OwnMostBought, _top
from .data import Case, next_basket_tasks, next_click_tasks
from hanzo.training.metrics import bootstrap

from .metrics import METRICS

ASK_AT = ("moment", "end")
DAY_MS = 86_400_000
# How long the owner had been away when asked: days from their latest ingested event to the
# store's clock (the newest event ingested); the user features' short windows are 24 h, 7 d, 30 d
ABSENCE_DAYS = ((0, 7), (7, 30), (30, None))


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


class OwnHistory:
    """The owner's own most bought (basket task) or most viewed (session task) products, from
    the events the server was given so far: OwnMostBought over the owner's baskets (each click
    a basket of its own in a session), filled by what is most popular in those events."""

    def __init__(self, kind: str, vocabulary) -> None:
        self.kind = kind
        self.vocabulary = vocabulary
        self.event_type = "purchase" if kind == "basket" else "product_view"
        self.baskets: dict[str, dict[str, tuple[int, set[int]]]] = {}  # owner -> basket -> (start, items)
        self.popularity = np.zeros(len(vocabulary))  # baskets holding each item
        self.last_seen: dict[str, int] = {}  # owner -> latest ingested event (ms)

    def add(self, records: list[dict]) -> None:
        for r in records:
            if r["event_type"] != self.event_type:
                continue
            owner = (r.get("user_id") or r["session_id"]) if self.kind == "basket" else r["session_id"]
            item = self.vocabulary.index.get((r.get("payload") or {}).get("product_id"))
            if not owner or item is None:
                continue
            basket = r["session_id"] if self.kind == "basket" else r["event_id"]
            baskets = self.baskets.setdefault(owner, {})
            start, items = baskets.get(basket, (r["timestamp"], set()))
            if item not in items:
                items.add(item)
                self.popularity[item] += 1
            baskets[basket] = (min(start, r["timestamp"]), items)
            self.last_seen[owner] = max(self.last_seen.get(owner, r["timestamp"]), r["timestamp"])

    def history(self, owner: str) -> list[list[int]]:
        baskets = self.baskets.get(owner, {})
        return [sorted(baskets[b][1]) for b in sorted(baskets, key=lambda b: (baskets[b][0], b))]

    def recommend(self, owner: str, k: int) -> list[int]:
        history = self.history(owner)
        known = len({item for basket in history for item in basket})
        model = OwnMostBought()
        model.popular.order = _top(self.popularity, min(k + known, len(self.popularity)))
        return model.recommend(Case(owner, history, []), k)


def _absence(days: float) -> str:
    for low, high in ABSENCE_DAYS:
        if days >= low and (high is None or days < high):
            return f"{low}-{high}d" if high is not None else f">={low}d"
    return "unknown"


def evaluate(url: str, events: Path, kind: str = "auto", seed: int = 0, batch: int = 1000, log=print,
             ask_at: str = "moment", stub=None) -> dict:
    if ask_at not in ASK_AT:
        raise ValueError(f"ask_at must be one of {ASK_AT}, not {ask_at!r}")
    records = sorted(read_records(events), key=lambda r: (r["timestamp"], r["event_id"]))
    if kind == "auto":
        kind = "basket" if any(r["event_type"] == "purchase" and r.get("user_id") for r in records[:20000]) else \
            "session"
    _, test = next_basket_tasks(events) if kind == "basket" else next_click_tasks(events)
    metrics = ("recall", "ndcg") if kind == "basket" else ("recall", "mrr")
    skip = held_out_events(records, kind, test.cases)
    stream = [r for r in records if r["event_id"] not in skip]
    cases = sorted(test.cases, key=lambda c: (c.as_of, c.key))
    if stub is None:
        stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(url, options=[
            ("grpc.max_send_message_length", 64 << 20)]))
    vocabulary = test.vocabulary
    own = OwnHistory(kind, vocabulary)
    baseline_name = "own_most_bought" if kind == "basket" else "own_most_viewed"
    results = {m: np.zeros(len(cases)) for m in metrics}
    baseline = {m: np.zeros(len(cases)) for m in metrics}
    absent_days = np.zeros(len(cases))
    sources: Counter = Counter()
    fallbacks = 0
    position = 0
    clock = None  # the newest event time ingested: the store's clock
    started = time.monotonic()
    if ask_at == "end":
        send_events(stub, stream, "eval-end", batch)
        own.add(stream)
        position = len(stream)
        clock = stream[-1]["timestamp"] if stream else None
        log(f"{len(stream)} events ingested, {time.monotonic() - started:.0f} s; asking {len(cases)} cases "
            f"at the last event")
    for c, case in enumerate(cases):
        pending = []
        while position < len(stream) and stream[position]["timestamp"] <= case.as_of:
            pending.append(stream[position])
            position += 1
        if pending:
            send_events(stub, pending, f"eval-{c}", batch)
            own.add(pending)
            clock = pending[-1]["timestamp"]
        query = commerce_pb2.RecommendRequest(k=test.k, request_id=f"eval-{case.key}")
        if kind == "basket":
            query.user_id = case.key
        else:
            query.session_id = case.key
        answer = stub.Recommend(query, timeout=10)
        fallbacks += answer.fallback
        sources.update(item.source for item in answer.items)
        ranked = [vocabulary.index.get(item.product_id, -1) for item in answer.items]
        mine = own.recommend(case.key, test.k)
        for m in metrics:
            results[m][c] = METRICS[m](ranked, case.target, test.k)
            baseline[m][c] = METRICS[m](mine, case.target, test.k)
        seen = own.last_seen.get(case.key)
        absent_days[c] = (clock - seen) / DAY_MS if seen is not None and clock is not None else np.nan
        if (c + 1) % 500 == 0:
            log(f"{c + 1}/{len(cases)} cases, {time.monotonic() - started:.0f} s")

    def summary(values: np.ndarray) -> dict:
        return {"mean": float(values.mean()), "ci95": list(bootstrap(values, seed=seed))} if len(values) else \
            {"mean": float("nan"), "ci95": [float("nan"), float("nan")]}

    groups = {}
    labels = np.array([_absence(d) if np.isfinite(d) else "unknown" for d in absent_days])
    for label in [_absence(low) for low, _ in ABSENCE_DAYS] + ["unknown"]:
        chosen = labels == label
        if chosen.any():
            groups[label] = {"cases": int(chosen.sum()),
                             "model": {m: summary(v[chosen]) for m, v in results.items()},
                             baseline_name: {m: summary(v[chosen]) for m, v in baseline.items()}}
    shown = sum(sources.values())
    report = {"task": kind, "events": str(events), "ask_at": ask_at, "cases": len(cases), "k": test.k, "seed": seed,
              "clock_at_end": clock,
              "fallback_share": fallbacks / max(len(cases), 1),
              "metrics": {m: summary(v) for m, v in results.items()},
              "baselines": {baseline_name: {m: summary(v) for m, v in baseline.items()}},
              # paired on the same cases: the model's value less the baseline's, case by case
              "model_minus_baseline": {m: summary(results[m] - baseline[m]) for m in metrics},
              "absence_days": {"median": float(np.nanmedian(absent_days)) if len(cases) else float("nan"),
                               "share_over_30": float(np.mean(absent_days >= 30)) if len(cases) else 0.0},
              "by_absence": groups,
              "source_share": {s: n / shown for s, n in sorted(sources.items())} if shown else {}}
    return report


def main_report(report: dict) -> str:
    def shown(values: dict) -> str:
        return ", ".join(f"{m}@{report['k']} {v['mean']:.4f} [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}]"
                         for m, v in values.items())

    parts = [shown(report["metrics"])]
    parts += [f"{name} {shown(values)}" for name, values in report.get("baselines", {}).items()]
    moment = "the end of the stream" if report.get("ask_at") == "end" else "each case's moment"
    return (f"{report['task']} task, {report['cases']} cases through the server, asked at {moment}: "
            + "; ".join(parts) + f"; fallback answers {100 * report['fallback_share']:.1f}%")
