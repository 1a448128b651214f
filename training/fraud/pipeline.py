"""`hanzo train fraud`: from an event log (orders, chargebacks and everything around them), the
input vectors as the server builds them, split by time (earliest 60% train, next 20%
validation, latest 20% test); xgboost and the MLP trained, alpha chosen on validation, all
compared on test with the rules engine at the same review rate; written as one model version
`fraud/<n>`: the blended ONNX graph, the trees as arrays for the serving-time TreeSHAP, the
input layout and the report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from hanzo.server.experiments.drift import REFERENCE_FILE, Reference
from hanzo.server.features.formats import read_records
from hanzo.server.surfaces.fraud_inputs import FraudInputs
from hanzo.training.repository_writer import write_version

from .boosting import fit_xgb, predict_xgb
from .dataset import FraudRows, build_rows, signal_names, split_by_time
from .export import ensemble_onnx
from .logistic import fit_logistic
from .metrics import at_review, average_precision, average_precision_ci, flag_to_catch, flag_top
from .mlp import fit_mlp, predict
from .rules import rules_flag, shop_rules
from hanzo.training.xgb_export import tree_ensemble

MODEL = "fraud"


def choose_alpha(y: np.ndarray, p_xgb: np.ndarray, p_mlp: np.ndarray) -> float:
    """The blend weight with the best validation precision-recall area (ties: nearer 0.5)."""
    grid = np.round(np.linspace(0.0, 1.0, 21), 2)
    scores = [average_precision(y, a * p_xgb + (1 - a) * p_mlp) for a in grid]
    if not np.isfinite(scores).any():  # no chargeback in the validation days yet: nothing to choose by
        return 0.5
    best = np.nanmax(scores)
    return float(min((a for a, s in zip(grid, scores) if s >= best - 1e-12), key=lambda a: abs(a - 0.5)))


def load_sorted(events_path: Path) -> list[dict]:
    records = read_records(events_path)
    records.sort(key=lambda r: r["timestamp"])
    return records


def train_fraud(events_path: Path, model_repo: Path, seed: int = 0, log=print, truth: Path | None = None) -> dict:
    """`truth`: a simulation's truth.json, to judge against the orders that really were fraud
    as well as against the chargebacks (which include friendly fraud and miss some)."""
    records = load_sorted(events_path)
    inputs = FraudInputs(signal_names(records))
    rows = build_rows(records, inputs)
    train, validation, test = split_by_time(rows)
    log(f"{len(rows)} orders ({int(rows.y.sum())} charged back): {len(train)} train, {len(validation)} validation, "
        f"{len(test)} test; {len(inputs.names)} inputs")
    booster, tree_report = fit_xgb(train.x, train.y, validation.x, validation.y, seed, log=log)
    mlp, mlp_report = fit_mlp(train.x, train.y, validation.x, validation.y, seed, log=log)
    logistic = fit_logistic(train.x, train.y, validation.x, validation.y, seed, log=log)
    alpha = choose_alpha(validation.y, predict_xgb(booster, validation.x), predict(mlp, validation.x))
    log(f"alpha {alpha}")
    amount_line = float(np.quantile(train.amount, 0.99)) if len(train) else 0.0
    report = {"events": str(events_path), "seed": seed, "orders": len(rows), "charged_back": int(rows.y.sum()),
              "split": {"train": len(train), "validation": len(validation), "test": len(test)},
              "alpha": alpha, "xgboost": tree_report, "mlp": mlp_report, "rules_amount_line": amount_line,
              "test": compare(test, booster, mlp, alpha, amount_line, seed, logistic)}
    if truth is not None:
        frauds = set(json.loads(Path(truth).read_text())["fraud_orders"])
        really = FraudRows(test.x, np.array([o in frauds for o in test.order_ids], np.float32), test.amount,
                           test.timestamp, test.order_ids, test.orders, test.names)
        report["test_against_truth"] = compare(really, booster, mlp, alpha, amount_line, seed, logistic)
    for part in ("test", "test_against_truth"):
        for name, figures in report.get(part, {}).get("systems", {}).items():
            at = figures["at_rules_review_rate"]
            log(f"{part} {name}: PR-AUC {figures['pr_auc']:.4f}; at review rate {report[part]['review_rate']:.4f} "
                f"caught {at['caught_share']:.3f} of fraud amount, false-positive rate {at['false_positive_rate']:.5f}")
        if part in report:
            log(f"{part} ensemble vs rules: {report[part]['ensemble_vs_rules']}")
    # the inputs and scores the newest rows before the test gave: what live traffic is held to
    reference = Reference.from_rows(list(inputs.names), validation.x, alpha * predict_xgb(booster, validation.x)
                                    + (1 - alpha) * predict(mlp, validation.x))
    version_dir = write_fraud_version(model_repo, booster, mlp, alpha, inputs, report, reference)
    return {**report, "version_dir": str(version_dir)}


def compare(test: FraudRows, booster, mlp, alpha: float, amount_line: float, seed: int, logistic=None) -> dict:
    """Every system on the test rows: the precision-recall area, and what it catches at the
    review rate the rules engine runs at."""
    flagged, _ = rules_flag(test.x, test.names, shop_rules(amount_line))
    rate = float(flagged.mean()) if len(flagged) else 0.0
    p_xgb, p_mlp = predict_xgb(booster, test.x), predict(mlp, test.x)
    scores = {"ensemble": alpha * p_xgb + (1 - alpha) * p_mlp, "xgboost": p_xgb, "mlp": p_mlp}
    if logistic is not None:
        scores["logistic_regression"] = logistic.predict(test.x)
    systems = {"rules": {"at_rules_review_rate": at_review(test.y, test.amount, flagged), "pr_auc": float("nan")}}
    rules = systems["rules"]["at_rules_review_rate"]
    for name, score in scores.items():
        systems[name] = {"pr_auc": average_precision(test.y, score),
                         "pr_auc_ci95": average_precision_ci(test.y, score, seed),
                         "at_rules_review_rate": at_review(test.y, test.amount, flag_top(score, rate)),
                         "at_rules_catch": at_review(test.y, test.amount, flag_to_catch(
                             test.y, test.amount, score, rules["fraud_amount_caught"])),
                         "at_default_thresholds": at_review(test.y, test.amount, score >= 0.3)}
    same_rate, same_catch = systems["ensemble"]["at_rules_review_rate"], systems["ensemble"]["at_rules_catch"]

    def change(a: float, b: float) -> float | None:
        return a / b - 1 if b else None

    return {"review_rate": rate, "systems": systems,
            "ensemble_vs_rules": {
                # the same share of orders reviewed: how much less fraud gets through
                "fraud_loss_change": change(same_rate["fraud_loss"], rules["fraud_loss"]),
                "false_positive_change": change(same_rate["false_positives"], rules["false_positives"]),
                # the same fraud amount caught: how many fewer good orders are stopped
                "false_positive_change_same_catch": change(same_catch["false_positives"], rules["false_positives"]),
                "review_rate_same_catch": same_catch["review_rate"]}}


def write_fraud_version(model_repo: Path, booster, mlp, alpha: float, inputs: FraudInputs, report: dict,
                        reference: Reference | None = None) -> Path:
    n = len(inputs.names)
    root = Path(model_repo) / MODEL
    existing = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()] if root.is_dir() else []
    version = max(existing, default=0) + 1
    config = mc.ModelConfig(name=MODEL, backend="onnxruntime", max_batch_size=64, default_model_filename="model.onnx")
    # No queue delay: requests that arrive while one batch runs form the next.
    config.dynamic_batching.max_queue_delay_microseconds = 0
    config.dynamic_batching.default_queue_policy.max_queue_size = 1024
    group = config.instance_group.add()
    group.count, group.kind = 1, mc.ModelInstanceGroup.KIND_AUTO
    config.version_policy.latest.num_versions = 1
    config.parameters["artifacts"].string_value = MODEL
    trees = tree_ensemble(booster)
    staging = Path(model_repo) / f".fraud-trees-{version}.npz"
    staging.parent.mkdir(parents=True, exist_ok=True)
    trees.save(staging)
    extra = {"trees.npz": staging.read_bytes(),
             "inputs.json": json.dumps({"names": list(inputs.names), "signals": list(inputs.signals),
                                        "alpha": alpha}).encode(),
             "report.json": json.dumps(report, indent=1, default=float).encode()}
    staging.unlink()
    if reference is not None:
        staging = Path(model_repo) / f".fraud-reference-{version}.json"
        reference.save(staging)
        extra[REFERENCE_FILE] = staging.read_bytes()
        staging.unlink()
    return write_version(Path(model_repo), config, version, ensemble_onnx(booster, mlp, alpha, n), extra,
                         candidate=True)
