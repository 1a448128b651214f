"""`hanzo eval fraud`: a shop's event log replayed into a running server over gRPC, its latest
orders (the test split: the last 20% by time) scored with ScoreFraud as they happen, and the
answers judged against the chargebacks the log holds: precision-recall area with a bootstrap
interval, fraud caught and false positives at a review rate, the decisions given. With the
model repository, the served scores are also checked against the same version's scores over
vectors built offline (training's replay), which finds any skew between the two paths."""
from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from google.protobuf.timestamp_pb2 import Timestamp

from hanzo.server.surfaces.fraud_inputs import FraudInputs, FraudOrder
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

from ..eval_client import send_events
from .dataset import build_rows
from .metrics import at_review, average_precision, average_precision_ci, flag_top
from .pipeline import load_sorted


def order_request(order: FraudOrder, merchant_id: str, request_id: str) -> commerce_pb2.FraudRequest:
    stamp = Timestamp()
    stamp.FromMilliseconds(order.timestamp)
    message = commerce_pb2.Order(order_id=order.order_id, user_id=order.user_id, session_id=order.session_id,
                                 timestamp=stamp, amount=order.amount, currency=order.currency, card_id=order.card_id,
                                 device_id=order.device_id, ip=order.ip, email=order.email,
                                 shipping_address_id=order.shipping_address_id,
                                 billing_address_id=order.billing_address_id)
    for item in order.items or ():
        message.items.add(product_id=str(item["product_id"]), quantity=float(item.get("quantity") or 1.0),
                          price=float(item.get("price") or 0.0))
    message.signals.update({k: float(v) for k, v in (order.signals or {}).items()})
    message.context.update({k: str(v) for k, v in (order.context or {}).items()})
    return commerce_pb2.FraudRequest(merchant_id=merchant_id, request_id=request_id, order=message)


def evaluate(url: str, events_path: Path, model_repo: Path | None = None, merchant_id: str = "", seed: int = 0,
             review_rate: float | None = None, log=print) -> dict:
    """`review_rate`: where to compare (default: the rules engine's rate from the served
    version's training report, when the repository is given)."""
    records = load_sorted(events_path)
    orders = [r for r in records if r["event_type"] == "order"]
    by_time = sorted(range(len(orders)), key=lambda i: orders[i]["timestamp"])
    first_test = by_time[int(len(orders) * 0.8)] if orders else 0
    cut = orders[first_test]["timestamp"] if orders else 0
    charged = {r["payload"].get("order_id") for r in records if r["event_type"] == "chargeback"}
    history = [r for r in records if r["timestamp"] < cut]
    rest = [r for r in records if r["timestamp"] >= cut]
    started = time.monotonic()
    scores, labels, amounts, order_ids, decisions = [], [], [], [], {}
    version = ""
    with grpc.insecure_channel(url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        send_events(stub, history, "eval-fraud-history")
        log(f"{len(history)} events of history ingested in {time.monotonic() - started:.1f} s")
        pending: list[dict] = []
        for record in rest:
            if record["event_type"] != "order":
                pending.append(record)
                continue
            if pending:
                send_events(stub, pending, f"eval-fraud-{len(scores)}")
                pending = []
            order = FraudOrder.from_event(record)
            answer = stub.ScoreFraud(order_request(order, merchant_id, f"eval-{order.order_id}"), timeout=10)
            # The order as the gateway streams it (the server recorded it under the same event
            # id, so whichever arrives second is a duplicate).
            send_events(stub, [order.event()], f"eval-fraud-order-{order.order_id}")
            scores.append(answer.score)
            labels.append(order.order_id in charged)
            amounts.append(order.amount)
            order_ids.append(order.order_id)
            name = commerce_pb2.Decision.Name(answer.decision)
            decisions[name] = decisions.get(name, 0) + 1
            version = answer.model_version
        if pending:
            send_events(stub, pending, "eval-fraud-tail")
    y, score, amount = np.asarray(labels, float), np.asarray(scores), np.asarray(amounts)
    report = {"events": str(events_path), "url": url, "model_version": version, "orders": len(y),
              "charged_back": int(y.sum()), "seconds": round(time.monotonic() - started, 1),
              "pr_auc": average_precision(y, score), "pr_auc_ci95": average_precision_ci(y, score, seed),
              "decisions": decisions, "at_default_thresholds": at_review(y, amount, score >= 0.3)}
    if model_repo is not None and version:
        offline = _offline_scores(records, Path(model_repo) / "fraud" / version, order_ids)
        report["offline_max_abs_difference"] = float(np.max(np.abs(offline - score))) if len(score) else 0.0
        trained = json.loads((Path(model_repo) / "fraud" / version / "report.json").read_text())
        review_rate = trained["test"]["review_rate"] if review_rate is None else review_rate
    if review_rate is not None:
        report["review_rate"] = review_rate
        report["at_review_rate"] = at_review(y, amount, flag_top(score, review_rate))
    log(f"{len(y)} test orders ({int(y.sum())} charged back): PR-AUC {report['pr_auc']:.4f}; decisions {decisions}")
    return report


def _offline_scores(records: list[dict], version_dir: Path, order_ids: list[str]) -> np.ndarray:
    """The version's scores over the vectors training's replay builds for the same orders."""
    meta = json.loads((version_dir / "inputs.json").read_text())
    rows = build_rows(records, FraudInputs(tuple(meta["signals"])))
    where = {o: i for i, o in enumerate(rows.order_ids)}
    x = rows.x[[where[o] for o in order_ids]]
    session = ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(["score"], {"features": x})[0][:, 0].astype(np.float64)

