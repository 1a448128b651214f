"""`hanzo train recommend`: build the recommender from an event file and write it into the
model repository as one version: the user tower (model.onnx, served through the batcher), the
item embeddings and their ANN index, the blend's signals and weights, and an evaluation report
(validation-tuned, scored on the held-out test split against the baselines)."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from hanzo.server.experiments.drift import REFERENCE_FILE, Reference
from hanzo.server.features.formats import read_catalog, read_records
from hanzo.server.models.production import pin_production
from hanzo.server.retrieval.ann import ItemIndex

from .baselines import ItemKNN, LastItemTransitions, OwnMostBought, Popularity, evaluate, tune_item_knn
from .data import next_basket_tasks, next_click_tasks
from hanzo.training.metrics import bootstrap
from .pipeline import HISTORY, Trained, evaluate_blend, recommend_reference, train_and_score, tune_signals
from .two_tower import TrainingConfig

MODEL_NAME = "recommend"


def _summary(values: dict[str, np.ndarray], seed: int) -> dict:
    return {m: {"mean": float(v.mean()), "ci95": list(bootstrap(v, seed=seed))} for m, v in values.items()}


def train(events: Path, model_repo: Path, catalog: Path | None = None, kind: str = "auto",
          config: TrainingConfig | None = None, log=print) -> Path:
    config = config or TrainingConfig()
    started = time.monotonic()
    records = sorted(read_records(events), key=lambda r: r["timestamp"])
    if kind == "auto":
        kind = "basket" if any(r["event_type"] == "purchase" and r.get("user_id") for r in records[:20000]) else \
            "session"
    validation, test = (next_basket_tasks(events) if kind == "basket" else next_click_tasks(events))
    metrics = ("recall", "ndcg") if kind == "basket" else ("recall", "mrr")
    products = {p["product_id"]: p for p in read_catalog(catalog)} if catalog else {}
    log(f"{kind} task: {len(validation.cases)} validation and {len(test.cases)} test cases, "
        f"{len(test.vocabulary)} products")
    trained = train_and_score(records, validation, config, log, catalog=products)
    _, blend, best, (neighbours, window) = tune_signals(trained, validation, metrics[0])
    log(f"blend {blend.weights}, co-visitation {neighbours} neighbours over the last {window}: "
        f"validation {metrics[0]} {best:.4f}")
    final = train_and_score(records, test, config, log, neighbours, window, catalog=products)
    report = {"task": kind, "events": str(events), "seed": config.seed, "training": asdict(config),
              "blend": blend.weights, "co_visitation": {"neighbours": neighbours, "window": window},
              "model": _summary(evaluate_blend(blend, final.case_parts, test.cases, test.k, metrics), config.seed),
              "k": test.k, "test_cases": len(test.cases), "baselines": {}}
    report["baselines"] = _baselines(validation, test, kind, metrics, config.seed)
    version = _write_version(model_repo, final, test.vocabulary.ids, blend.weights, report,
                             recommend_reference(final, blend))
    log(f"wrote {version} in {time.monotonic() - started:.0f} s")
    return version


def _baselines(validation, test, kind: str, metrics: tuple, seed: int) -> dict:
    best_knn, _ = tune_item_knn(validation, metrics[0], windows=(None,) if kind == "basket" else (1, 3, None))
    models = [Popularity(), ItemKNN(**best_knn)]
    models.append(OwnMostBought() if kind == "basket" else LastItemTransitions())
    out = {}
    for model in models:
        out[model.name] = _summary(evaluate(model.fit(test), test, metrics), seed)
    out["item_knn"]["tuned"] = best_knn
    return out


def _write_version(model_repo: Path, trained: Trained, product_ids: list[str], weights: dict,
                   report: dict, reference: Reference | None = None) -> Path:
    model_dir = Path(model_repo) / MODEL_NAME
    versions = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []
    version = max(versions, default=0) + 1
    staging = model_dir / f".staging-{version}"
    staging.mkdir(parents=True)
    trained.model.export_user_tower(staging / "model.onnx")
    np.save(staging / "items.npy", trained.items)
    ItemIndex.build(trained.items).save(staging / "index.bin")
    (staging / "items.json").write_text(json.dumps(product_ids))
    np.savez(staging / "signals.npz", **trained.signals.arrays())
    (staging / "blend.json").write_text(json.dumps({"weights": weights, "history": HISTORY}))
    (staging / "report.json").write_text(json.dumps(report, indent=1))
    if reference is not None:  # what drift is measured against
        reference.save(staging / REFERENCE_FILE)
    config = mc.ModelConfig(name=MODEL_NAME, backend="onnxruntime", max_batch_size=64)
    config.dynamic_batching.max_queue_delay_microseconds = 0
    config.dynamic_batching.default_queue_policy.max_queue_size = 1024
    config.parameters["artifacts"].string_value = "recommend"
    from google.protobuf import text_format

    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    target = model_dir / str(version)
    pin_production(model_dir, by="train")  # the version serving now stays production; the new one is a candidate
    staging.rename(target)
    pin_production(model_dir, by="train")  # a first version is production
    return target
