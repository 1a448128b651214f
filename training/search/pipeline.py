"""`hanzo train search`: the re-ranker trained on graded judgments over the catalogue's BM25
candidates (queries corrected and expanded as the server does), synonyms learned from search
logs when events are given, exported as one model version: the query scorer (model.onnx,
served through the batcher), the product states precomputed over the catalogue, the synonyms
and a report; and the product encoder as the same version of `search_encoder`, which the
server runs through the repository for products added later."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from hanzo.server.experiments.drift import REFERENCE_FILE, Reference
from hanzo.server.features.catalog import CatalogState
from hanzo.server.features.formats import read_catalog, read_records
from hanzo.server.models.production import pin_production
from hanzo.server.search.lexical import LexicalIndex
from hanzo.server.search.spelling import SpellingCorrector
from hanzo.server.search.synonyms import Synonyms
from hanzo.server.search.understanding import QueryUnderstanding
from hanzo.server.search.text import product_text, terms

from .drift_reference import query_lists, search_reference
from .clicks import click_lists, evaluate_lists, read_searches, split_by_time, user_vectors
from .judgments import Judgments
from .synonym_learning import learn_synonyms
from .rerank_data import ProductTable
from .train import RerankTraining, evaluate, fit_reranker, product_states, train_reranker

MODEL = "search"
ENCODER = "search_encoder"


def plain_terms(query: str) -> list[tuple[str, float]]:
    """BM25 alone: the query's terms as typed."""
    return [(t, 1.0) for t in terms(query)]


def load_catalog(path: Path) -> tuple[dict[str, dict], CatalogState]:
    catalog = CatalogState()
    for record in read_catalog(path):
        catalog.upsert(record)
    return catalog.products, catalog


def train_search(judgments_path: Path, catalog_path: Path, model_repo: Path, events: Path | None = None,
                 config: RerankTraining | None = None, log=print, init: Path | None = None) -> dict:
    """`init`: a search model version to fine-tune from (its reranker.pt), e.g. one trained
    on a larger judgment set."""
    config = config or RerankTraining()
    torch.manual_seed(config.seed)
    products, catalog = load_catalog(catalog_path)
    index = LexicalIndex.build(products.values())
    table = ProductTable.build(index, products, catalog.category_slot)
    corrector = SpellingCorrector.from_texts(product_text(p) for p in products.values())
    synonyms = Synonyms()
    if events is not None:
        synonyms = learn_synonyms(read_records(events), products.values(), corrector)
        log(f"synonyms learned from {events}: {len(synonyms.pairs())} pairs")
    understanding = QueryUnderstanding(corrector, synonyms)
    judgments = Judgments.read(judgments_path)
    train, dev = judgments.split(seed=config.seed)
    log(f"{len(judgments.queries)} queries: {len(train.queries)} train, {len(dev.queries)} dev; "
        f"{len(products)} products")
    start = torch.load(Path(init) / "reranker.pt") if init is not None else None
    model, training = train_reranker(index, table, train, understanding.weighted_terms, config, log, start,
                                     understanding.corrected)
    states = product_states(model, table)
    full = evaluate(model, index, table, dev, understanding.weighted_terms, states=states, seed=config.seed,
                    task=config.task, corrected=understanding.corrected)
    plain = evaluate(model, index, table, dev, plain_terms, states=states, seed=config.seed, task=config.task)
    report = {"judgments": str(judgments_path), "catalog": str(catalog_path), "seed": config.seed, "task": config.task,
              "training": training, "dev_queries": len(dev.queries),
              "bm25": {"ndcg10": plain["bm25"], "ci95": plain["bm25_ci"]},
              "bm25_query_understanding": {"ndcg10": full["bm25"], "ci95": full["bm25_ci"]},
              "full_path": {"ndcg10": full["ndcg"], "ci95": full["ndcg_ci"]},
              "synonyms": len(synonyms.pairs()), "fine_tuned_from": str(init) if init else None}
    log(f"dev NDCG@10: BM25 {plain['bm25']:.4f}, + query understanding {full['bm25']:.4f}, "
        f"+ re-ranker {full['ndcg']:.4f}")
    reference = search_reference(model, table, states, query_lists(index, dev.queries, understanding.weighted_terms,
                                                                    understanding.corrected, config.depth))
    write_version(model_repo, model, index.product_ids, states, synonyms, report, reference)
    return report


def train_search_clicks(events_path: Path, catalog_path: Path, model_repo: Path,
                        config: RerankTraining | None = None, log=print) -> dict:
    """The re-ranker from a shop's own search logs (the simulator's, or a real one's): clicks
    corrected for position bias and purchases after the search, the user as they were then;
    trained on the earliest 70% of searches, early-stopped on the next 10%, tested on the last
    20%."""
    config = config or RerankTraining()
    torch.manual_seed(config.seed)
    products, catalog = load_catalog(catalog_path)
    events = read_records(events_path)
    for record in events:
        if record["event_type"] == "catalog_update":
            catalog.upsert(record["payload"])
    products = catalog.products
    index = LexicalIndex.build(products.values())
    table = ProductTable.build(index, products, catalog.category_slot)
    corrector = SpellingCorrector.from_texts(product_text(p) for p in products.values())
    synonyms = learn_synonyms(events, products.values(), corrector)
    understanding = QueryUnderstanding(corrector, synonyms)
    searches, outcomes = read_searches(events)
    users = user_vectors(events, searches)
    lists = click_lists(index, searches, outcomes, users, understanding.weighted_terms, understanding.corrected)
    train, validation, test = split_by_time(lists)
    log(f"{len(searches)} searches, {len(lists)} with an outcome: {len(train)} train, {len(validation)} validation, "
        f"{len(test)} test; {len(synonyms.pairs())} synonym pairs learned")

    def validate(model) -> tuple[float, float]:
        scored = evaluate_lists(model, table, validation, product_states(model, table))
        return scored["ndcg"], scored["bm25"]

    model, training = fit_reranker(table, train, validate, config, log)
    states = product_states(model, table)
    tested = evaluate_lists(model, table, test, states, config.seed)
    log(f"test NDCG@10 (clicks weighted by inverse propensity, purchases): BM25 order {tested['bm25']:.4f}, "
        f"re-ranked {tested['ndcg']:.4f}")
    report = {"events": str(events_path), "catalog": str(catalog_path), "seed": config.seed, "training": training,
              "test": tested, "synonyms": len(synonyms.pairs()), "source": "search logs"}
    reference = search_reference(model, table, states, validation)
    version_dir = write_version(model_repo, model, index.product_ids, states, synonyms, report, reference)
    return {**report, "version_dir": str(version_dir)}


def write_version(model_repo: Path, model, product_ids: list[str], states: np.ndarray, synonyms: Synonyms,
                  report: dict, reference: Reference | None = None) -> Path:
    """The next version of the `search` model, with its config.pbtxt, and the product encoder
    that made its states as the same version of `search_encoder` (written first, so a polling
    server that sees the scorer finds its encoder)."""
    root = Path(model_repo) / MODEL
    encoder_root = Path(model_repo) / ENCODER
    root.mkdir(parents=True, exist_ok=True)
    encoder_root.mkdir(parents=True, exist_ok=True)
    existing = [int(p.name) for folder in (root, encoder_root) for p in folder.iterdir()
                if p.is_dir() and p.name.isdigit()]
    number = str(max(existing, default=0) + 1)
    staging, encoder_staging = root / f".{number}.partial", encoder_root / f".{number}.partial"
    for folder in (staging, encoder_staging):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    model.export(staging / "model.onnx", encoder_staging / "model.onnx")
    torch.save(model.state_dict(), staging / "reranker.pt")  # for fine-tuning on other judgments
    np.save(staging / "states.npy", states.astype(np.float32))
    (staging / "products.json").write_text(json.dumps(product_ids))
    (staging / "synonyms.json").write_text(json.dumps([list(p) for p in synonyms.pairs()]))
    (staging / "report.json").write_text(json.dumps(report, indent=1))
    if reference is not None:  # what drift is measured against
        reference.save(staging / REFERENCE_FILE)
    encoder = mc.ModelConfig(name=ENCODER, backend="onnxruntime", max_batch_size=0)
    (encoder_root / "config.pbtxt").write_text(text_format.MessageToString(encoder))
    for folder in (encoder_root, root):  # what serves now stays production; the new version is a candidate
        pin_production(folder, by="train")
    encoder_staging.rename(encoder_root / number)
    config = mc.ModelConfig(name=MODEL, backend="onnxruntime", max_batch_size=0)
    config.parameters["artifacts"].string_value = MODEL
    (root / "config.pbtxt").write_text(text_format.MessageToString(config))
    staging.rename(root / number)  # a poller never sees half a version
    for folder in (encoder_root, root):  # a first version is production
        pin_production(folder, by="train")
    return root / number
