"""Train the search re-ranker on graded judgments: listwise softmax over each training query's
BM25 candidates (unjudged ones as gain 0, so the model learns what a judged-relevant product
looks like among the ones BM25 brings), early-stopped on validation queries split off the
training ones; then score the dev queries through the full path."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from hanzo.server.search.lexical import LexicalIndex
from hanzo.training.metrics import bootstrap

from hanzo.training.metrics import graded_ndcg_at

from .judgments import Judgments
from hanzo.server.search.rerank_inputs import lexical_features, query_ids

from .rerank_data import ProductTable, TrainingList, candidates_for, no_user, training_lists
from .reranker import Reranker, RerankerConfig


@dataclass
class RerankTraining:
    epochs: int = 6
    list_size: int = 200  # candidates per query per step: BM25's head and the positives below it
    queries_per_step: int = 4
    embedding_lr_share: float = 0.1
    lr: float = 2e-3
    weight_decay: float = 1e-5
    # The serving depth ([search] candidates), so the lists are the ones the ranker will see.
    depth: int = 100
    # "full": rank the BM25 candidates over the catalogue; "rerank": each query's judged products.
    task: str = "full"
    seed: int = 0


def _sample(item: TrainingList, size: int, rng: np.random.Generator) -> np.ndarray:
    """BM25's head of the list as served (the first `size` candidates, where the top of the
    answer is decided) and the positives further down. Sampling negatives at random or
    over-weighting positives trains a ranker that does worse on the whole list."""
    head = np.arange(min(size, len(item.gains)))
    deeper = np.flatnonzero(item.gains[size:] > 0) + size
    return np.concatenate([head, deeper])


def _batch(table: ProductTable, items: list[TrainingList], size: int, rng: np.random.Generator):
    """Padded tensors for several queries; padding candidates have gain 0 and a -inf mask."""
    picks = [_sample(item, size, rng) for item in items]
    b, lq, n = len(items), max(len(i.query) for i in items), max(len(p) for p in picks)
    query = np.zeros((b, lq), np.int64)
    ids = np.zeros((b, n, table.ids.shape[1]), np.int64)
    features = np.zeros((b, n, table.features.shape[1]), np.float32)
    lexical = np.zeros((b, n, items[0].lexical.shape[1]), np.float32)
    gains = np.zeros((b, n), np.float32)
    valid = np.zeros((b, n), bool)
    users = np.stack([i.user for i in items])
    for r, (item, pick) in enumerate(zip(items, picks)):
        k = len(pick)
        query[r, :len(item.query)] = item.query
        ids[r, :k] = table.ids[item.slots[pick]]
        features[r, :k] = table.features[item.slots[pick]]
        lexical[r, :k] = item.lexical[pick]
        gains[r, :k] = item.gains[pick]
        valid[r, :k] = True
    return [torch.from_numpy(x) for x in (query, ids, features, lexical, users, gains, valid)]


def train_reranker(index: LexicalIndex, table: ProductTable, train: Judgments, weighted_terms,
                   config: RerankTraining | None = None, log=print,
                   start: dict | None = None, corrected=lambda query: query) -> tuple[Reranker, dict]:
    """On graded judgments: lists from the training queries, early-stopped on validation
    queries split off them."""
    config = config or RerankTraining()
    fit, validation = train.split(dev_share=0.1, seed=config.seed + 1)
    lists = training_lists(index, fit.queries, train.gain, config.depth, weighted_terms, config.task == "rerank",
                           corrected)
    log(f"re-ranker: {len(lists)} training lists, {len(validation.queries)} validation queries")

    def validate(model: Reranker) -> tuple[float, float]:
        scored = evaluate(model, index, table, validation, weighted_terms, depth=config.depth, task=config.task,
                          corrected=corrected)
        return scored["ndcg"], scored["bm25"]

    return fit_reranker(table, lists, validate, config, log, start)


def fit_reranker(table: ProductTable, lists: list[TrainingList], validate, config: RerankTraining, log=print,
                 start: dict | None = None) -> tuple[Reranker, dict]:
    """Listwise softmax over each list's candidates toward its gains. Early-stopped on
    `validate(model) -> (score, baseline)`, the starting point included: when no epoch beats it
    (BM25's order for a fresh model, or the model fine-tuned from `start`), that is kept."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = Reranker(RerankerConfig())
    if start is not None:
        model.load_state_dict(start)
    # The word table is most of the parameters and sees each word rarely: it learns slowly, so
    # that a few thousand training queries do not simply memorise their words.
    embedding = [model.embedding.weight]
    others = [p for p in model.parameters() if p is not model.embedding.weight]
    optimiser = torch.optim.AdamW([{"params": embedding, "lr": config.lr * config.embedding_lr_share},
                                   {"params": others, "lr": config.lr}], weight_decay=config.weight_decay)
    best, baseline = validate(model)
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    history = [{"epoch": 0, "validation_ndcg10": best}]
    log(f"epoch 0: validation NDCG@10 {best:.4f} (BM25 {baseline:.4f})")
    for epoch in range(config.epochs):
        model.train()
        started, total, steps = time.monotonic(), 0.0, 0
        order = rng.permutation(len(lists))
        for first in range(0, len(order), config.queries_per_step):
            items = [lists[i] for i in order[first:first + config.queries_per_step]]
            query, ids, features, lexical, users, gains, valid = _batch(table, items, config.list_size, rng)
            scores = model(query, ids, features, lexical, users).masked_fill(~valid, -1e4)
            target = gains / gains.sum(dim=1, keepdim=True)
            loss = -(target * torch.log_softmax(scores, dim=1)).sum(dim=1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, steps = total + loss.item(), steps + 1
        score, baseline = validate(model)
        history.append({"epoch": epoch + 1, "loss": total / steps, "validation_ndcg10": score,
                        "seconds": time.monotonic() - started})
        log(f"epoch {epoch + 1}: loss {total / steps:.4f} validation NDCG@10 {score:.4f} (BM25 {baseline:.4f}) "
            f"({time.monotonic() - started:.0f} s)")
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, {"history": history, "validation_ndcg10": best, "validation_bm25_ndcg10": baseline,
                   "training_lists": len(lists)}


@torch.no_grad()
def product_states(model: Reranker, table: ProductTable, batch: int = 4096) -> np.ndarray:
    model.eval()
    out = [model.products(torch.from_numpy(table.ids[s:s + batch])).numpy() for s in range(0, len(table.ids), batch)]
    return np.concatenate(out) if out else np.zeros((0, table.ids.shape[1], model.config.dim), np.float32)


@torch.no_grad()
def evaluate(model: Reranker, index: LexicalIndex, table: ProductTable, judgments: Judgments, weighted_terms,
             depth: int = 1000, states: np.ndarray | None = None, seed: int = 0, task: str = "full",
             corrected=lambda query: query) -> dict:
    """NDCG@10 of BM25 alone and of BM25 then the re-ranker: over the whole catalogue, or
    re-ranking each query's judged products."""
    model.eval()
    states = product_states(model, table) if states is None else states
    bm25, reranked = [], []
    for q in judgments.queries:
        slots, scores = candidates_for(index, weighted_terms(q.query), q.judgments if task == "rerank" else None,
                                       depth)
        bm25.append(graded_ndcg_at([index.product_ids[s] for s in slots], q.judgments, judgments.gain))
        if len(slots) == 0:
            reranked.append(0.0)
            continue
        out = model.scorer(*[torch.from_numpy(x[None]) for x in (
            query_ids(corrected(q.query)), table.ids[slots], states[slots], table.features[slots],
            lexical_features(scores), no_user())])[0].numpy()
        order = np.lexsort((np.arange(len(out)), -out))
        reranked.append(graded_ndcg_at([index.product_ids[slots[j]] for j in order], q.judgments, judgments.gain))
    bm25, reranked = np.asarray(bm25), np.asarray(reranked)
    return {"queries": len(bm25), "bm25": float(bm25.mean()), "bm25_ci": bootstrap(bm25, seed),
            "ndcg": float(reranked.mean()), "ndcg_ci": bootstrap(reranked, seed),
            "gain_ci": bootstrap(reranked - bm25, seed)}
