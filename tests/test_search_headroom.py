"""The headroom report's check of how a judgment set was made: in a catalogue built only from
judged products, a product no training query judged belongs to a dev query."""
import csv
import json

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")

from hanzo.training.search.headroom import headroom  # noqa: E402
from hanzo.training.search.judgments import Judgments  # noqa: E402

WORDS = ["oak", "pine", "teak", "maple", "cedar", "birch", "walnut", "cherry", "ash", "elm",
         "beech", "alder", "poplar", "spruce", "fir", "larch", "hickory", "willow", "aspen", "yew"]


def test_catalogue_construction_counts_products_only_dev_queries_judged(tmp_path):
    catalog, judgments = tmp_path / "catalog.jsonl", tmp_path / "judgments.csv"
    with open(catalog, "w") as handle:
        for i, word in enumerate(WORDS):
            handle.write(json.dumps({"product_id": f"p{i}", "title": f"{word} shelf", "description": "wood"}) + "\n")
    with open(judgments, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query_id", "query", "product_id", "relevance"])
        for i, word in enumerate(WORDS):  # each query judges its own product alone
            writer.writerow([f"q{i}", f"{word} shelf", f"p{i}", 3])
    train, dev = Judgments.read(judgments).split(seed=0)
    assert train.queries and dev.queries
    report = headroom(judgments, catalog)["catalogue_construction"]
    assert report["products"] == len(WORDS)
    assert report["products_no_training_query_judged"] == len(dev.queries)
    # A product a training query judged is never a dev query's here; one none judged sometimes is.
    assert report["top100_judged_share_if_a_training_query_judged_it"] == 0.0
    assert report["top100_judged_share_if_none_did"] == 1.0 / len(dev.queries)
    assert report["ndcg10_unjudged_in_training_first"] == 1.0
