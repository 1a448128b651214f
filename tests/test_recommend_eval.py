"""Recommendation evaluation: splits, metrics, and the baselines to beat."""

from collections import Counter

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


class _FakeServer:
    """IngestEvents and Recommend in process: answers each user with their own most bought
    products among what it was given, and remembers the order of the calls."""

    def __init__(self):
        self.calls, self.bought = [], {}

    def IngestEvents(self, request, timeout=None):
        from hanzo.server.features.events import record_from_proto
        from hanzo.v1 import commerce_pb2
        for event in request.events:
            record = record_from_proto(event)
            self.bought.setdefault(record["user_id"], Counter())[record["payload"]["product_id"]] += 1
            self.calls.append(("ingest", record["event_id"]))
        return commerce_pb2.IngestAck()

    def Recommend(self, query, timeout=None):
        from hanzo.v1 import commerce_pb2
        self.calls.append(("recommend", query.user_id))
        mine = self.bought.get(query.user_id, Counter())
        ranked = sorted(mine, key=lambda p: (-mine[p], p))[:query.k]
        return commerce_pb2.RecommendResponse(items=[commerce_pb2.ScoredProduct(product_id=p, source="repeat")
                                                     for p in ranked])


def test_eval_asks_at_each_moment_or_at_the_end_beside_own_most_bought(tmp_path):
    from hanzo.training.recommend import eval_server
    # u1..u3 buy "a" again and again; u1 stops early (day 3), the others go on; each last basket is held out
    # and holds only what its customer bought before, so the fake server's lists find all of it
    events = []
    for user, days in (("u1", (0, 1, 2, 3)), ("u2", (0, 10, 20, 40, 50)), ("u3", (5, 15, 45, 60))):
        for n, day in enumerate(days):
            for item in (["a", "b"] if n % 2 else ["a", f"x{user}"]):
                events.append(_purchase(user, n, day, item))
    path = tmp_path / "events.jsonl"
    write_records(path, events)
    reports = {}
    for ask_at in ("moment", "end"):
        server = _FakeServer()
        reports[ask_at] = report = eval_server.evaluate("", path, ask_at=ask_at, stub=server, log=lambda *_: None)
        ingested = {event_id for call, event_id in server.calls if call == "ingest"}
        assert not ingested & {"u1-3-a", "u2-4-a", "u3-3-a"}  # the held-out baskets never go in
        assert len(ingested) == len(events) - 6
        asked = [i for i, (call, _) in enumerate(server.calls) if call == "recommend"]
        if ask_at == "end":  # everything in before the first question
            assert asked[0] == len(ingested) and len(asked) == 3
        else:
            assert asked[0] < len(ingested)
        assert report["ask_at"] == ask_at and report["cases"] == 3
        # the fake server is the baseline itself, on the same cases and histories
        assert report["metrics"]["recall"]["mean"] == report["baselines"]["own_most_bought"]["recall"]["mean"]
        assert report["model_minus_baseline"]["recall"]["mean"] == 0.0
        assert report["metrics"]["recall"]["mean"] == 1.0
        assert "own_most_bought" in eval_server.main_report(report)
    # u1 was last seen on day 2 of 60 when asked at the end, on day 2 of 3 at its moment
    assert reports["end"]["by_absence"][">=30d"]["cases"] == 1
    assert ">=30d" not in reports["moment"]["by_absence"]
    with pytest.raises(ValueError, match="ask_at"):
        eval_server.evaluate("", path, ask_at="later", stub=_FakeServer())
