"""Recommendation evaluation: splits, metrics, and the baselines to beat."""

import numpy as np
import pytest
from helpers import SHARED_DATA, shared_data

from hanzo.server.features.formats import write_records
from hanzo.training.recommend.baselines import (ItemKNN, LastItemTransitions, OwnMostBought, Popularity, evaluate,
                                                tune_item_knn)
from hanzo.training.recommend.data import Case, Task, Vocabulary, next_basket_tasks, next_click_tasks
from hanzo.training.metrics import binary_ndcg_at, bootstrap
from hanzo.training.recommend.metrics import mrr_at, recall_at


def test_metrics_by_hand():
    assert recall_at([1, 2, 3], [3, 9], 3) == 0.5
    assert mrr_at([5, 3, 1], [1], 3) == pytest.approx(1 / 3)
    assert mrr_at([5, 3, 1], [1], 2) == 0.0
    assert binary_ndcg_at([1, 2], [1, 2], 2) == pytest.approx(1.0)
    assert binary_ndcg_at([2, 1], [1], 2) == pytest.approx(1 / np.log2(3))
    values = np.random.default_rng(0).random(500)
    low, high = bootstrap(values, seed=1)
    assert low < values.mean() < high and bootstrap(values, seed=1) == (low, high)


def _purchase(user, basket, day, item):
    return {"event_id": f"{user}-{basket}-{item}", "event_type": "purchase", "timestamp": 1_000_000 + day * 86_400_000,
            "user_id": user, "session_id": f"{user}-{basket}", "payload": {"product_id": item}, "context": {}}


def test_next_basket_splits_hold_out_the_last_and_second_to_last(tmp_path):
    events = [_purchase("u1", b, b, item) for b, items in enumerate([["a"], ["b"], ["c", "d"], ["e"]])
              for item in items]
    events += [_purchase("u2", 0, 0, "a"), _purchase("u2", 1, 1, "b")]  # too short to score
    path = tmp_path / "events.jsonl"
    write_records(path, events)
    validation, test = next_basket_tasks(path)
    v = validation.vocabulary.index
    assert [c.key for c in test.cases] == ["u1"]
    assert test.cases[0].target == [v["e"]] and test.cases[0].history == [[v["a"]], [v["b"]], [v["c"], v["d"]]]
    assert validation.cases[0].target == [v["c"], v["d"]]
    assert [v["e"]] not in validation.train and [v["e"]] not in test.train


def test_next_click_splits_by_session_start(tmp_path):
    events = []
    for s in range(20):
        for k, item in enumerate(["x", "y", f"z{s % 3}"]):
            events.append({"event_id": f"{s}-{k}", "event_type": "product_view", "timestamp": 1_000_000 + s * 1000 + k,
                           "user_id": None, "session_id": f"s{s}", "payload": {"product_id": item}, "context": {}})
    path = tmp_path / "clicks.jsonl"
    write_records(path, events)
    validation, test = next_click_tasks(path, test_share=0.1)
    assert [c.key for c in test.cases] == ["s18", "s19"] and [c.key for c in validation.cases] == ["s16", "s17"]
    assert len(test.train) == 18 and len(validation.train) == 16


def toy_task() -> Task:
    vocab = Vocabulary.build([str(i) for i in range(6)])
    train = [[0, 1, 2], [0, 1], [1, 2], [3, 4], [3, 4], [3, 4, 5]] * 5
    cases = [Case("c1", [[3]], [4]), Case("c2", [[0], [0], [1]], [0])]
    return Task("toy", vocab, train, cases, k=2)


def test_baselines_on_a_toy_task():
    task = toy_task()
    assert Popularity().fit(task).recommend(task.cases[0], 2) == [1, 3]
    assert OwnMostBought().fit(task).recommend(task.cases[1], 2) == [0, 1]
    knn = ItemKNN(neighbours=3).fit(task)
    assert knn.recommend(task.cases[0], 1) == [4]
    transitions = LastItemTransitions().fit(task)
    assert transitions.recommend(task.cases[0], 1) == [4]
    scores = evaluate(knn, task, ("recall", "mrr"))
    assert scores["recall"][0] == 1.0
    best, score = tune_item_knn(task, "recall", neighbours=(1, 3), self_weights=(0.0, 1.0))
    assert best["neighbours"] in (1, 3) and best["self_weight"] in (0.0, 1.0) and 0 <= score <= 1




@shared_data("yoochoose")
def test_real_data_baselines_order_as_expected():
    validation, test = next_click_tasks(SHARED_DATA / "yoochoose" / "events.jsonl.gz")
    popularity = evaluate(Popularity().fit(test), test, ("recall",))["recall"].mean()
    transitions = evaluate(LastItemTransitions().fit(test), test, ("recall",))["recall"].mean()
    assert transitions > 2 * popularity
