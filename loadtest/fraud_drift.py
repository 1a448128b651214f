"""A fraud tactic no model has seen, begun mid-run: how long until drift says so, and what
retraining on it buys.

    python -m hanzo.loadtest.fraud_drift --out loadtest/reports/fraud-drift.json
        [--users 2000] [--products 600] [--days 120] [--tactic-day 40] [--retrain-days 30,60] [--seed 5]

The simulator (training/simulator/world.py) runs `days` days with its usual fraud and, from
`tactic_day` on, the reseller wave: fresh accounts filling baskets of many different cheap
products, shipped to a few drops. The stale model is `hanzo train fraud` on the events before
the wave. A server serving it (`[fraud] drift_window`) replays the shop from `warm_days`
before the wave: every event ingested in time order, every order scored with ScoreFraud as it
happens, the server's drift gauges (hanzo_drift_psi per input, server/experiments/drift.py)
read at every simulated hour. Reported: the inputs already past 0.25 before the wave (ages,
in a shop that opened on day 0), and the first hour after the wave began at which another
input's PSI crossed 0.25, which inputs, and the score's PSI beside them.

Then the model is retrained on the events up to each of `retrain_days` into the wave (its
labels are chargebacks, which come weeks after the order), and every model scores the orders
after the last retrain (offline, on the same point-in-time vectors), against the truth:
PR-AUC over every order, and on the wave alone (its orders against the honest ones), with
bootstrap intervals."""
from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from prometheus_client.parser import text_string_to_metric_families

from hanzo.server.features.formats import write_records
from hanzo.server.surfaces.fraud_inputs import FraudInputs, FraudOrder
from hanzo.training.eval_client import send_events
from hanzo.training.fraud.dataset import build_rows
from hanzo.training.fraud.eval_server import order_request
from hanzo.training.fraud.metrics import average_precision, average_precision_ci
from hanzo.training.fraud.pipeline import load_sorted, train_fraud
from hanzo.training.simulator import SimulationConfig, simulate
from hanzo.v1 import commerce_pb2_grpc

from .closed_loop import serve_repo
from .fuzz_server import stop
from .reports import write_report
from .targets import free_port

DAY_MS, HOUR_MS = 86_400_000, 3_600_000
SHIFTED = 0.25  # PSI: the usual line for "the population has shifted"


def _train(records: list[dict], until_ms: int, workdir: Path, name: str, seed: int) -> Path:
    events = workdir / f"{name}.jsonl.gz"
    write_records(events, [r for r in records if r["timestamp"] < until_ms])
    return Path(train_fraud(events, workdir / name, seed=seed, log=lambda *_: None)["version_dir"])


def _serve(workdir: Path, repo: Path, metrics_port: int, window: int):
    (workdir / "serve.toml").write_text(f"[fraud]\ndrift_window = {window}\n")
    return serve_repo(workdir, repo, "--metrics-port", str(metrics_port), "--config", str(workdir / "serve.toml"))


def _drift(metrics_port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return {s.labels["input"]: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "hanzo_drift_psi"}


def replay(url: str, metrics_port: int, records: list[dict], start_ms: int, tactic_ms: int, end_ms: int) -> list[dict]:
    """The shop from `start_ms` to `end_ms` through the server; PSI per input each hour."""
    timeline, pending = [], []
    next_hour = start_ms + HOUR_MS
    with grpc.insecure_channel(url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        send_events(stub, [r for r in records if r["timestamp"] < start_ms], "history")
        for record in (r for r in records if start_ms <= r["timestamp"] < end_ms):
            while record["timestamp"] >= next_hour:
                if pending:
                    send_events(stub, pending, f"replay-{next_hour}")
                    pending = []
                psi = _drift(metrics_port)
                timeline.append({"hours_into_wave": round((next_hour - tactic_ms) / HOUR_MS, 1),
                                 "shifted": sorted(k for k, v in psi.items() if v > SHIFTED and k != "score"),
                                 "score_psi": round(psi.get("score", 0.0), 4),
                                 "top": sorted(((round(v, 4), k) for k, v in psi.items()), reverse=True)[:5]})
                next_hour += HOUR_MS
            if record["event_type"] != "order":
                pending.append(record)
                continue
            if pending:
                send_events(stub, pending, f"replay-{record['event_id']}")
                pending = []
            order = FraudOrder.from_event(record)
            stub.ScoreFraud(order_request(order, "", f"drift-{order.order_id}"), timeout=10)
            send_events(stub, [order.event()], f"order-{order.order_id}")
    return timeline


def _scores(records: list[dict], version_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    meta = json.loads((version_dir / "inputs.json").read_text())
    rows = build_rows(records, FraudInputs(tuple(meta["signals"])))
    session = ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return list(rows.order_ids), np.asarray(rows.timestamp), session.run(["score"], {"features": rows.x})[0][:, 0]


def _labelled_wave(records: list[dict], truth: dict, until_ms: int) -> int:
    """The wave's orders whose chargeback a retrain at `until_ms` could see."""
    return sum(1 for r in records if r["event_type"] == "chargeback" and r["timestamp"] < until_ms
               and truth.get(r["payload"].get("order_id")) == "reseller")


def judged(records: list[dict], truth: dict, models: dict[str, Path], from_ms: int, seed: int) -> dict:
    """Each model on the orders from `from_ms`: PR-AUC against the truth over every order and
    on the wave alone (its orders against the honest ones)."""
    out = {}
    for name, version_dir in models.items():
        ids, times, score = _scores(records, version_dir)
        keep = times >= from_ms
        ids, score = [i for i, k in zip(ids, keep) if k], score[keep]
        fraud = np.array([i in truth for i in ids], float)
        wave = np.array([truth.get(i) == "reseller" for i in ids])
        honest_or_wave = (fraud == 0) | wave
        out[name] = {"orders": len(ids), "fraud": int(fraud.sum()), "wave_orders": int(wave.sum()),
                     "pr_auc_all": round(average_precision(fraud, score), 4),
                     "pr_auc_all_ci95": [round(x, 4) for x in average_precision_ci(fraud, score, seed)],
                     "pr_auc_wave": round(average_precision(wave[honest_or_wave].astype(float),
                                                            score[honest_or_wave]), 4),
                     "pr_auc_wave_ci95": [round(x, 4) for x in average_precision_ci(
                         wave[honest_or_wave].astype(float), score[honest_or_wave], seed)]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.fraud_drift", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=600)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--tactic-day", type=int, default=40)
    parser.add_argument("--warm-days", type=int, default=6, help="replayed through the server before the wave")
    parser.add_argument("--watch-days", type=int, default=10, help="replayed into the wave")
    parser.add_argument("--retrain-days", default="30,60",
                        help="days into the wave to retrain at, comma-separated (chargebacks come 14 to 60 days "
                             "after an order, so early retrains have few of the wave's labels)")
    parser.add_argument("--fraud-level", type=float, default=2.0)
    parser.add_argument("--window", type=int, default=1000, help="[fraud] drift_window")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-fraud-drift"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import shutil

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    config = SimulationConfig(seed=args.seed, users=args.users, products=args.products, days=args.days,
                              fraud_level=args.fraud_level, reseller_from_day=args.tactic_day)
    sim = simulate(config, args.workdir / "sim")
    records = load_sorted(args.workdir / "sim" / "events.jsonl.gz")
    truth = sim.truth.fraud_orders
    tactic_ms = sim.start_ms + args.tactic_day * DAY_MS
    retrain_days = [int(d) for d in args.retrain_days.split(",")]
    models = {"stale": _train(records, tactic_ms, args.workdir, "stale", args.seed)}
    for days in retrain_days:
        models[f"retrained_{days}_days_in"] = _train(records, tactic_ms + days * DAY_MS, args.workdir,
                                                     f"retrained-{days}", args.seed)
    stale = models["stale"]
    metrics_port = free_port()
    process, url = _serve(args.workdir, stale.parent.parent, metrics_port, args.window)
    try:
        timeline = replay(url, metrics_port, records, tactic_ms - args.warm_days * DAY_MS, tactic_ms,
                          tactic_ms + args.watch_days * DAY_MS)
    finally:
        stop(process)
    before = [t for t in timeline if t["hours_into_wave"] <= 0]
    # inputs shifted before the wave already (the simulated shop opened on day 0, so every
    # account, card and device ages past anything training saw): known, so not what finds it
    already = sorted({k for t in before for k in t["shifted"]})
    detected = next(({**t, "newly_shifted": [k for k in t["shifted"] if k not in already]} for t in timeline
                     if t["hours_into_wave"] > 0 and set(t["shifted"]) - set(already)), None)
    report = {"simulation": {"seed": args.seed, "users": args.users, "products": args.products, "days": args.days,
                             "fraud_level": args.fraud_level, "tactic_day": args.tactic_day},
              "window": args.window, "psi_line": SHIFTED,
              "wave_orders": sum(1 for p in truth.values() if p == "reseller"),
              "detected": detected, "shifted_before_the_wave": already,
              "hours_before_the_wave": len(before),
              "hours_before_the_wave_with_a_new_input_shifted": sum(bool(set(t["shifted"]) - set(already))
                                                                    for t in before),
              "timeline": timeline,
              "models": judged(records, truth, models, tactic_ms + max(retrain_days) * DAY_MS, args.seed),
              "judged_from_day": args.tactic_day + max(retrain_days), "retrain_days": retrain_days,
              "labelled_wave_orders_at_retrain": {
                  days: _labelled_wave(records, truth, tactic_ms + days * DAY_MS) for days in retrain_days}}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
