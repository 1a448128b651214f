"""Outcomes joined to the lists that led to them (shown -> clicked -> bought within the window,
per version and arm, per shopper, in bounded memory), and the gate's verdicts on them."""
from __future__ import annotations

import numpy as np
import pytest

from hanzo.server.experiments.gate import Gate, GateConfig
from hanzo.server.experiments.outcomes import ArmOutcomes, OutcomeJoin

HOUR = 3_600_000


def shown(request_id: str, user: str, products: list[str], version: str = "recommend:1", arm: str = "production",
          experiment: str = ""):
    return {"event_type": "recommendation_shown", "user_id": user, "session_id": "s", "timestamp": 0,
            "payload": {"request_id": request_id, "product_ids": products, "model_version": version, "arm": arm,
                        "experiment": experiment}}


def clicked(request_id: str, user: str, product: str, at: int, as_view: bool = False):
    if as_view:  # a storefront's tracking link: the list's request id in the view's context
        return {"event_type": "product_view", "user_id": user, "timestamp": at, "payload": {"product_id": product},
                "context": {"request_id": request_id, "source": "recommend"}}
    return {"event_type": "recommendation_clicked", "user_id": user, "timestamp": at,
            "payload": {"product_id": product, "request_id": request_id}}


def bought(user: str, product: str, at: int, price: float = 10.0, quantity: float = 1.0):
    return {"event_type": "purchase", "user_id": user, "timestamp": at,
            "payload": {"product_id": product, "price": price, "quantity": quantity}}


def test_a_list_its_clicks_and_the_purchases_through_them_are_joined():
    join = OutcomeJoin(window_ms=24 * HOUR)
    join.shown(shown("r1", "u1", ["a", "b", "c"]))
    join.shown(shown("r2", "u2", ["a", "b"], "recommend:2", "candidate"))
    join.observe([shown("r9", "u9", ["a"])])  # a caller's own "shown" event adds no list
    join.observe([clicked("r1", "u1", "a", 1000), clicked("r1", "u1", "a", 2000),  # the same product: once
                  clicked("r1", "u1", "z", 2000),  # not in the list
                  clicked("r1", "u1", "b", 3000, as_view=True),
                  clicked("r1", "u2", "c", 3000),  # another shopper's click on u1's list
                  clicked("r2", "u2", "b", 1000), clicked("r9", "u9", "a", 1000)])  # a list never served
    join.observe([bought("u1", "a", 5000, price=12.5, quantity=2), bought("u1", "a", 6000),  # once per click
                  bought("u1", "b", 3000 + 25 * HOUR),  # after the window
                  bought("u1", "c", 7000),  # never clicked
                  bought("u2", "b", 2000, price=4.0), {"event_type": "purchase", "payload": None}])  # malformed
    report = join.report()
    assert report["recommend:1/production"] == {
        "lists": 1, "shoppers": None, "clicks": 2, "purchases": 1, "revenue": 25.0, "ctr": 2.0, "conversion": 1.0,
        "revenue_per_list": 25.0}  # outside a comparison only the sums are kept, no shopper
    assert report["recommend:2/candidate"]["clicks"] == 1 and report["recommend:2/candidate"]["revenue"] == 4.0
    assert set(report) == {"recommend:1/production", "recommend:2/candidate"} and join.late == 2


def test_two_shops_request_ids_do_not_meet_and_an_erased_shopper_leaves_every_count():
    join = OutcomeJoin()
    join.shown(shown("r1", "shop-a/u1", ["a"]))  # scoped shopper ids: one request id in two shops
    join.shown(shown("r1", "shop-b/u1", ["a"], arm="candidate", experiment="recommend:2"))
    join.observe([clicked("r1", "shop-b/u1", "a", 10), bought("shop-b/u1", "a", 20)])
    assert join.report()["recommend:1/production"]["clicks"] == 0
    assert join.report()["recommend:1/candidate/recommend:2"]["purchases"] == 1
    join.forget("shop-b/u1")
    assert not join._lists.get(("shop-b/u1", "r1", "recommend")) and not join._clicks
    assert join.report()["recommend:1/candidate/recommend:2"] == {
        "lists": 0, "shoppers": 0, "clicks": 0, "purchases": 0, "revenue": 0.0, "ctr": None, "conversion": None,
        "revenue_per_list": None}
    join.shown(shown("r2", "u3", ["a"], experiment="recommend:3"))
    join.keep({"recommend:3"})  # the comparisons no longer made go; the sums outside any stay
    assert set(join.report()) == {"recommend:1/production/recommend:3", "recommend:1/production"}


def searched(request_id: str, user: str, products: list[str], version: str | None = "search:2"):
    payload = {"query": "red shoes", "product_ids": products, "request_id": request_id}
    if version:
        payload["model_version"] = version
    return {"event_type": "search", "user_id": user, "session_id": f"user:{user}", "timestamp": 0,
            "payload": payload}


def test_search_results_are_joined_like_lists_and_one_request_id_serves_both_surfaces():
    join = OutcomeJoin()
    join.shown(searched("r1", "u1", ["a", "b"]))
    join.shown(shown("r1", "u1", ["c", "d"]))  # the same page's recommendations, under the same id
    join.shown(searched("r2", "u1", ["e"], version=None))  # answered by BM25 alone
    join.observe([clicked("r1", "u1", "a", 10, as_view=True), clicked("r1", "u1", "c", 10, as_view=True),
                  clicked("r1", "u1", "b", 10),  # a recommendation click on a search's product: not the list's
                  clicked("r2", "u1", "e", 10, as_view=True)])
    join.observe([bought("u1", "a", 20, price=3.0), bought("u1", "e", 30, price=5.0)])
    report = join.report()
    assert report["search:2/production"] == {
        "lists": 1, "shoppers": None, "clicks": 1, "purchases": 1, "revenue": 3.0, "ctr": 1.0, "conversion": 1.0,
        "revenue_per_list": 3.0}
    assert report["recommend:1/production"]["clicks"] == 1 and report["recommend:1/production"]["purchases"] == 0
    assert report["search:none/production"]["revenue"] == 5.0


def test_memory_is_bounded_and_a_click_on_a_forgotten_list_is_late():
    join = OutcomeJoin(max_lists=2, max_clicks=2)
    for i in range(3):
        join.shown(shown(f"r{i}", f"u{i}", ["a"]))
    join.observe([clicked("r0", "u0", "a", 1), clicked("r2", "u2", "a", 1)])
    assert join.late == 1 and join.report()["recommend:1/production"]["clicks"] == 1
    assert len(join._lists) == 2
    for i in range(3, 6):  # the list of r2 forgotten: its click's purchase still counts
        join.shown(shown(f"r{i}", f"u{i}", ["a"]))
    join.observe([bought("u2", "a", 5)])
    assert join.report()["recommend:1/production"]["purchases"] == 1


def _outcomes(rate: float, shoppers: int, seed: int, lists_each: int = 4) -> ArmOutcomes:
    rng = np.random.default_rng(seed)
    out = ArmOutcomes.new(per_shopper=True)
    for s in range(shoppers):
        for _ in range(lists_each):
            out.clicks.add(f"s{s}", float(rng.random() < rate), 1.0)
    return out


def test_the_gate_promotes_stops_waits_and_rolls_back():
    config = GateConfig(min_shoppers=200)
    better = Gate(config, (0.5, 0.5))
    assert better.judge(_outcomes(0.10, 100, 1), _outcomes(0.14, 100, 2)).action == "wait"  # too few shoppers
    verdict = better.judge(_outcomes(0.10, 3000, 1), _outcomes(0.14, 3000, 2))
    assert verdict.action == "promote" and verdict.figures["relative_difference"] > 0.2, verdict
    slow = Gate(config, (0.5, 0.5)).judge(_outcomes(0.10, 3000, 1), _outcomes(0.14, 3000, 2), (2.0, 2.5))
    assert slow.action == "wait" and "p99" in slow.reason
    worse = Gate(config, (0.5, 0.5)).judge(_outcomes(0.14, 3000, 1), _outcomes(0.10, 3000, 2))
    assert worse.action == "stop"
    mismatch = Gate(config, (0.9, 0.1)).judge(_outcomes(0.1, 3000, 1), _outcomes(0.1, 3000, 2))
    assert mismatch.action == "stop" and "sample ratio mismatch" in mismatch.reason
    same = Gate(config, (0.5, 0.5)).judge(_outcomes(0.1, 3000, 1), _outcomes(0.1, 3000, 2))
    assert same.action == "wait"
    watch = Gate(config, (0.5, 0.5), watching=True)
    assert watch.judge(_outcomes(0.14, 3000, 1), _outcomes(0.10, 3000, 2)).action == "rollback"
    with pytest.raises(ValueError, match="metric"):
        GateConfig(metric="ctr")


class _Version:
    def __init__(self, version: int) -> None:
        self.version = version


class _Repository:
    """What the gate reads of the repository: production, the candidate above it, loaded versions."""

    def __init__(self, serving: int, present: list[int]) -> None:
        self.serving, self.present = serving, present

    def serving_version(self, model: str) -> int:
        return self.serving

    def candidate(self, model: str):
        newer = [v for v in self.present if v > self.serving]
        return _Version(max(newer)) if newer else None

    def get(self, model: str, version: str):
        return _Version(int(version))


class _Promotions:
    def __init__(self, repository: _Repository) -> None:
        self.repository, self.history = repository, [repository.serving]

    async def promote(self, model: str, version: int, by: str, expected: int | None = None) -> None:
        assert expected in (None, self.repository.serving)
        self.repository.serving = version
        self.history.append(version)

    async def rollback(self, model: str, by: str, expected: int | None = None) -> None:
        assert expected in (None, self.repository.serving)
        self.history.pop()
        self.repository.serving = self.history[-1]


def _fill(join: OutcomeJoin, key: tuple[str, str, str], rate: float, shoppers: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    clicks = join.outcomes(*key).clicks
    for s in range(shoppers):
        for _ in range(3):
            clicks.add(f"{key[1]}-{s}", float(rng.random() < rate), 1.0)


async def test_the_runner_promotes_watches_at_any_share_rolls_back_and_never_repromotes():
    from hanzo.server.experiments.arm_latency import ArmLatency
    from hanzo.server.experiments.config import ExperimentConfig
    from hanzo.server.experiments.runner import GateRunner

    repository = _Repository(serving=1, present=[1, 2])
    promotions = _Promotions(repository)
    join = OutcomeJoin()
    config = ExperimentConfig(candidate_share=0.1, gate=True, min_shoppers=100)
    runner = GateRunner("recommend", repository, promotions, join, ArmLatency(), config)
    assert runner.challenger()[1] == "candidate"
    _fill(join, ("recommend:1", "production", "recommend:2"), 0.10, 2700, 1)  # the split's 90 : 10
    _fill(join, ("recommend:2", "candidate", "recommend:2"), 0.30, 300, 2)
    assert (await runner.step()).action == "promote" and repository.serving == 2
    assert runner.challenger()[1] == "previous" and runner.watching == (2, 1)
    # watched at 90 : 10 the other way round: no sample ratio alarm, and a degradation rolls back
    _fill(join, ("recommend:2", "production", "recommend:1"), 0.10, 2700, 3)
    _fill(join, ("recommend:1", "previous", "recommend:1"), 0.10, 300, 4)
    assert (await runner.step()).action == "wait"
    _fill(join, ("recommend:1", "previous", "recommend:1"), 0.60, 300, 5)  # more of its shoppers, far better
    verdict = await runner.step()
    assert verdict.action == "rollback", verdict
    assert repository.serving == 1 and 2 in runner.stopped and runner.challenger() is None
    assert await runner.step() is None  # 2 is newest but stopped: nothing to judge
    assert [a["action"] for a in runner.status()["actions"]] == ["promote", "rollback"]


async def test_a_version_the_gate_promoted_and_a_person_rolled_back_is_never_promoted_again():
    from hanzo.server.experiments.arm_latency import ArmLatency
    from hanzo.server.experiments.config import ExperimentConfig
    from hanzo.server.experiments.runner import GateRunner

    repository = _Repository(serving=1, present=[1, 2])
    join = OutcomeJoin()
    runner = GateRunner("recommend", repository, _Promotions(repository), join, ArmLatency(),
                        ExperimentConfig(candidate_share=0.5, gate=True, min_shoppers=100))
    _fill(join, ("recommend:1", "production", "recommend:2"), 0.10, 1000, 1)
    _fill(join, ("recommend:2", "candidate", "recommend:2"), 0.30, 1000, 2)
    assert (await runner.step()).action == "promote"
    repository.serving = 1  # a person rolls back (hanzo models rollback)
    assert await runner.step() is None and "rolled back" in runner.stopped[2]
