"""The re-ranker trained from search logs: clicks weighted by the inverse of their rank's
estimated examination chance, purchases after the search counted, the user's features read as
of each search, split by time; a model version comes out and its report holds the test."""
import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")

from hanzo.server.features.formats import read_records  # noqa: E402
from hanzo.server.search.lexical import LexicalIndex  # noqa: E402
from hanzo.training.search.clicks import click_lists, read_searches, split_by_time, user_vectors  # noqa: E402
from hanzo.training.search.pipeline import load_catalog, plain_terms, train_search_clicks  # noqa: E402
from hanzo.training.search.train import RerankTraining  # noqa: E402
from hanzo.training.simulator import SimulationConfig, simulate  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("clicks")
    simulate(SimulationConfig(seed=5, users=1500, products=200, days=10, fraud_level=0), root)
    return root, read_records(root / "events.jsonl.gz")


def test_outcomes_weigh_deep_clicks_more_and_count_purchases(world):
    root, events = world
    searches, outcomes = read_searches(events)
    assert len(searches) > 500 and len(outcomes) > 100
    assert [s.timestamp for s in searches] == sorted(s.timestamp for s in searches)
    by_id = {s.event_id: s for s in searches}
    clicks = {}
    for e in events:
        context = e.get("context") or {}
        if e["event_type"] == "product_view" and context.get("source") == "search":
            clicks[(context["search_event_id"], e["payload"]["product_id"])] = int(context["position"])
    weight_at = {}
    for (search, product), rank in clicks.items():
        gain = outcomes[search][product]
        weight_at.setdefault(rank, []).append(gain)
        assert product in by_id[search].shown
    # A click further down was less likely to be seen, so it counts more (purchases add on top).
    assert np.median(weight_at[1]) == 1.0 and np.median(weight_at[5]) > 2.0
    assert any(g >= 2.0 + 1.0 for gains in outcomes.values() for g in gains.values())  # clicked and bought


def test_lists_carry_the_user_as_of_the_search(world):
    root, events = world
    products, _ = load_catalog(root / "catalog.jsonl")
    index = LexicalIndex.build(products.values())
    searches, outcomes = read_searches(events)
    users = user_vectors(events, searches)
    lists = click_lists(index, searches, outcomes, users, plain_terms)
    assert len(lists) > 100
    known = [item for item in lists if item.user[-1] == 1.0]
    assert known and any(item.user[:-1].sum() > 0 for item in known)
    for item in lists[:50]:
        assert item.gains.max() > 0 and len(item.slots) == len(item.gains) >= 2
        assert np.all(np.diff(item.lexical[:, 0]) <= 1e-6)  # BM25 order, as served
    train, validation, test = split_by_time(lists)
    assert len(train) > len(test) > 0 and len(validation) > 0


def test_a_model_version_from_search_logs(world, tmp_path):
    root, _ = world
    report = train_search_clicks(root / "events.jsonl.gz", root / "catalog.jsonl", tmp_path / "model_repo",
                                 RerankTraining(epochs=1), log=lambda m: None)
    version = tmp_path / "model_repo" / "search" / "1"
    assert {"model.onnx", "states.npy", "products.json", "synonyms.json", "reranker.pt"} <= \
        {p.name for p in version.iterdir()}
    assert (tmp_path / "model_repo" / "search_encoder" / "1" / "model.onnx").exists()
    saved = json.loads((version / "report.json").read_text())
    assert saved["test"]["lists"] > 0 and 0 < saved["test"]["bm25"] <= 1 and 0 < saved["test"]["ndcg"] <= 1
    assert report["training"]["history"][0]["epoch"] == 0
