"""`hanzo eval search`: the dev queries of a judgment set asked of a running server over gRPC,
scored by graded NDCG@10 beside BM25 alone (the same index code over the same catalogue, the
query as typed).

  full:   the server retrieves from the whole catalogue (unjudged products gain 0);
  rerank: the server re-ranks each query's judged products, passed as candidates."""
from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np

from hanzo.server.search.lexical import LexicalIndex
from hanzo.training.metrics import bootstrap
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

from hanzo.training.metrics import graded_ndcg_at

from .judgments import Judgments
from .pipeline import load_catalog, plain_terms


def evaluate(url: str, judgments_path: Path, catalog_path: Path, mode: str = "full", seed: int = 0, k: int = 10,
             log=print) -> dict:
    products, _ = load_catalog(catalog_path)
    index = LexicalIndex.build(products.values())
    _, dev = Judgments.read(judgments_path).split(seed=seed)
    served, bm25, corrected = [], [], 0
    started = time.monotonic()
    with grpc.insecure_channel(url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        for n, q in enumerate(dev.queries):
            request = commerce_pb2.SearchRequest(query=q.query, k=k, request_id=f"eval-{n}")
            if mode == "rerank":
                request.candidate_product_ids.extend(q.judgments)
                slots, _ = index.rank_given(plain_terms(q.query), q.judgments)
                baseline = [index.product_ids[s] for s in slots]
            else:
                slots, _ = index.search(plain_terms(q.query), k)
                baseline = [index.product_ids[s] for s in slots]
            response = stub.Search(request, timeout=10)
            corrected += response.corrected_query != q.query
            served.append(graded_ndcg_at([i.product_id for i in response.items], q.judgments, dev.gain, k))
            bm25.append(graded_ndcg_at(baseline, q.judgments, dev.gain, k))
    served, bm25 = np.asarray(served), np.asarray(bm25)
    report = {"judgments": str(judgments_path), "mode": mode, "queries": len(served), "k": k, "seed": seed,
              "corrected_queries": corrected, "model_version": response.model_version if len(served) else "",
              "bm25": {"ndcg": float(bm25.mean()), "ci95": bootstrap(bm25, seed)},
              "served": {"ndcg": float(served.mean()), "ci95": bootstrap(served, seed)},
              "difference_ci95": bootstrap(served - bm25, seed),
              "relative_gain": float(served.mean() / bm25.mean() - 1.0) if bm25.mean() > 0 else None,
              "gap_closed": float((served.mean() - bm25.mean()) / (1.0 - bm25.mean())) if bm25.mean() < 1 else None,
              "seconds": round(time.monotonic() - started, 1)}
    log(f"{len(served)} dev queries ({mode}): BM25 {report['bm25']['ndcg']:.4f}, served {report['served']['ndcg']:.4f}")
    return report


def main_report(report: dict) -> str:
    b, s = report["bm25"], report["served"]
    return (f"NDCG@{report['k']} over {report['queries']} dev queries ({report['mode']}): "
            f"BM25 {b['ndcg']:.4f} [{b['ci95'][0]:.4f}, {b['ci95'][1]:.4f}], "
            f"served {s['ndcg']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}], "
            f"relative {100 * report['relative_gain']:+.1f}%, gap closed {100 * report['gap_closed']:.1f}%")

