"""How much a re-ranker can gain over BM25 on a judgment set's dev queries: the judged-relevant
products BM25's top k holds (recall at 10, 100, 1,000), where they rank, and the NDCG@10 of the
perfect re-ranking of BM25's top 100 and top 1,000 (unjudged products gain 0).

It also measures how the judgment set was made: a catalogue built from the judged products
alone (Home Depot's) holds every product because some query judged it, so a product no training
query judged is, by construction, likely one of a dev query's. `catalogue_construction` gives
the share judged among BM25's top 100 with and without a training query's judgment, and the
NDCG@10 of a "ranker" that knows nothing of relevance: BM25's top 100 with the products no
training query judged moved first. A learned feature from training queries' judgments
(history, popularity, query-log expansion) can score through this and not through relevance.

    python -m hanzo.training.search.headroom --judgments J --catalog C
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hanzo.server.search.lexical import LexicalIndex

from hanzo.training.metrics import graded_ndcg_at

from .judgments import Judgments
from .pipeline import load_catalog, plain_terms


def headroom(judgments_path: Path, catalog_path: Path, seed: int = 0, depth: int = 1000) -> dict:
    products, _ = load_catalog(catalog_path)
    index = LexicalIndex.build(products.values())
    train, dev = Judgments.read(judgments_path).split(seed=seed)
    seen = {p for q in train.queries for p in q.judgments}
    judged_with, judged_without, no_history = [], [], []
    recall = {10: [], 100: [], depth: []}
    bm25, perfect_100, perfect_all, ranks = [], [], [], []
    for q in dev.queries:
        slots, _ = index.search(plain_terms(q.query), depth)
        ids = [index.product_ids[s] for s in slots]
        relevant = {p for p, r in q.judgments.items() if dev.gain(r) > 0}
        for k, values in recall.items():
            values.append(len(relevant & set(ids[:k])) / max(len(relevant), 1))
        ranks.extend(i + 1 for i, p in enumerate(ids) if p in relevant)
        bm25.append(graded_ndcg_at(ids, q.judgments, dev.gain))
        by_gain = lambda p: -q.judgments.get(p, 0.0)  # noqa: E731
        perfect_100.append(graded_ndcg_at(sorted(ids[:100], key=by_gain), q.judgments, dev.gain))
        perfect_all.append(graded_ndcg_at(sorted(ids, key=by_gain), q.judgments, dev.gain))
        for p in ids[:100]:
            (judged_with if p in seen else judged_without).append(p in q.judgments)
        no_history.append(graded_ndcg_at(sorted(ids[:100], key=lambda p: p in seen), q.judgments, dev.gain))
    return {"queries": len(bm25), "judged_per_query": float(np.mean([len(q.judgments) for q in dev.queries])),
            "recall": {str(k): float(np.mean(v)) for k, v in recall.items()},
            "relevant_rank_percentiles": dict(zip(("p25", "p50", "p75", "p90"),
                                                  np.percentile(ranks, [25, 50, 75, 90]).tolist())) if ranks else {},
            "bm25_ndcg10": float(np.mean(bm25)), "perfect_rerank_top100_ndcg10": float(np.mean(perfect_100)),
            f"perfect_rerank_top{depth}_ndcg10": float(np.mean(perfect_all)),
            "catalogue_construction": {
                "products_no_training_query_judged": len(index.product_ids) - len(seen & set(index.product_ids)),
                "products": len(index.product_ids),
                "top100_judged_share_if_a_training_query_judged_it": float(np.mean(judged_with or [0.0])),
                "top100_judged_share_if_none_did": float(np.mean(judged_without or [0.0])),
                "ndcg10_unjudged_in_training_first": float(np.mean(no_history))}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judgments", type=Path, required=True)
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(headroom(args.judgments, args.catalog, args.seed), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
