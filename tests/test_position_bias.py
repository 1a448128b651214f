"""Position bias by intervention harvesting: exact on hand-made logs, and close to the
simulator's true examination curve where the naive click rate by rank is far off."""
import numpy as np
import pytest

from hanzo.training.search.position_bias import (estimate_position_bias, ips_weights, naive_click_rate,
                                                 search_impressions)
from hanzo.training.simulator import Simulation, SimulationConfig
from hanzo.training.simulator.search import RESULTS_SHOWN, examine_probability


def logged_search(event_id: str, query: str, shown: list[str], clicked_ranks: list[int]) -> list[dict]:
    """A search event and one linked click per clicked rank, in the simulator's shapes."""
    events = [{"event_id": event_id, "event_type": "search", "timestamp": 0, "user_id": "u", "session_id": "s",
               "payload": {"query": query, "product_ids": shown}, "context": {"device": "d"}}]
    for rank in clicked_ranks:
        events.append({"event_id": f"{event_id}-c{rank}", "event_type": "product_view", "timestamp": 1,
                       "user_id": "u", "session_id": "s", "payload": {"product_id": shown[rank - 1], "price": 1.0},
                       "context": {"device": "d", "source": "search", "search_event_id": event_id,
                                   "position": str(rank)}})
    return events


def test_impressions_link_clicks_to_their_search():
    events = logged_search("s1", "lamp", ["a", "b", "c"], [2])
    events += logged_search("s2", "rug", ["c", "a"], [])
    # Not credited: a click naming another product than the one at its position, and a view
    # that did not come from search.
    events.append({"event_id": "x1", "event_type": "product_view", "payload": {"product_id": "a"},
                   "context": {"source": "search", "search_event_id": "s2", "position": "1"}})
    events.append({"event_id": "x2", "event_type": "product_view", "payload": {"product_id": "c"}, "context": {}})
    imp = search_impressions(reversed(events))  # clicks seen before their search still count
    rows = sorted((imp.queries[q], imp.products[d], int(k), bool(c))
                  for q, d, k, c in zip(imp.query, imp.product, imp.rank, imp.clicked, strict=True))
    assert rows == [("lamp", "a", 1, False), ("lamp", "b", 2, True), ("lamp", "c", 3, False),
                    ("rug", "a", 2, False), ("rug", "c", 1, False)]


def test_exact_on_expected_click_counts():
    # True propensity [1, 0.5, 0.25]. "a" (relevance 0.8) alternates ranks 1 and 2, "e"
    # (relevance 0.4) ranks 2 and 3; each logs exactly its expected clicks out of 10 showings.
    # "c" is always first and clicked (no comparison), the rest never clicked: neither informs p.
    events = []
    for s in range(10):
        events += logged_search(f"l{s}", "lamp", ["a", "b"], [1] if s < 8 else [])
        events += logged_search(f"m{s}", "lamp", ["b", "a"], [2] if s < 4 else [])
        events += logged_search(f"r{s}", "rug", ["c", "d", "e"], ([1] if s < 9 else []) + ([3] if s < 1 else []))
        events += logged_search(f"t{s}", "rug", ["c", "e", "d"], ([1] if s < 9 else []) + ([2] if s < 2 else []))
    imp = search_impressions(events)
    p = estimate_position_bias(imp, max_rank=3)
    np.testing.assert_allclose(p, [1.0, 0.5, 0.25], rtol=1e-8)
    # The naive rate mixes relevance in (click rates 26/40, 6/40, 1/20 by rank), so it is off.
    np.testing.assert_allclose(naive_click_rate(imp, max_rank=3), [1.0, 0.15 / 0.65, 0.05 / 0.65])
    with pytest.raises(ValueError, match="not identified"):
        estimate_position_bias(search_impressions(logged_search("s", "q", ["a", "b"], [1, 2])))


def test_ips_weights_are_inverse_propensity_clipped():
    propensity = np.array([1.0, 0.5, 0.25, np.nan])
    np.testing.assert_allclose(ips_weights([1, 2, 3, 3], propensity, clip=10.0), [1.0, 2.0, 4.0, 4.0])
    np.testing.assert_allclose(ips_weights(np.array([3, 4]), propensity, clip=3.0), [3.0, 3.0])
    with pytest.raises(ValueError):
        ips_weights([5], propensity)


def test_estimate_recovers_the_simulators_examination_curve():
    # ~7,000 searches in ~6 s: subsamples of a 34k-search run put the worst rank's relative
    # error at a median of 0.10 and at most 0.17 over 30 draws; the naive rate never under 0.29.
    sim = Simulation(SimulationConfig(seed=5, users=3000, products=300, days=20, fraud_level=0)).run()
    imp = search_impressions(sim.events)
    assert len(np.unique(imp.search)) > 6000
    truth = np.array([examine_probability(k) for k in range(1, RESULTS_SHOWN + 1)])
    p = estimate_position_bias(imp, max_rank=RESULTS_SHOWN)
    naive = naive_click_rate(imp, max_rank=RESULTS_SHOWN)
    error, naive_error = np.abs(p / truth - 1), np.abs(naive / truth - 1)
    assert error.max() < 0.2, (p.round(3), truth.round(3))
    assert error[1:].mean() < 0.08
    # The correction matters: ranking puts relevant products on top, so the naive curve falls
    # too steeply, below the truth at every rank past the first.
    assert naive_error.max() > 0.3 and (naive[1:] < truth[1:]).all()
    assert naive_error.max() > 3 * error.max()
    np.testing.assert_allclose(ips_weights(np.arange(1, 11), p, clip=np.inf), 1 / p)
