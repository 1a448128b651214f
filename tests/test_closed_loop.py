"""The closed-loop simulator: shoppers click and buy from the lists a shop shows them, by the
truth; the oracle's lists beat popularity's by the truth and by what shoppers did; a running
server takes every event and serves every list (its model trained on the warm-up days)."""
import pytest

from hanzo.loadtest.closed_loop import per_thousand, run_shop
from hanzo.training.simulator import SimulationConfig
from hanzo.training.simulator.closed_loop import ClosedLoopSimulation, PopularityShop


def test_lists_are_only_shown_once_showing_and_events_reach_the_shop_in_time():
    seen = []

    class Recording(PopularityShop):
        def observe(self, events):
            seen.extend(e["timestamp"] for e in events)
            super().observe(events)

    sim = ClosedLoopSimulation(SimulationConfig(seed=2, users=120, products=60, days=4))
    sim.shop = Recording()
    sim.run_days(0, 2)
    assert sim.outcome.lists == 0 and len(seen) > 100
    sim.showing = True
    sim.run_days(2, 4)
    assert sim.outcome.lists > 20 and sim.outcome.impressions == 10 * sim.outcome.lists
    assert len(sim.outcome.clicks) == len(sim.outcome.purchases) == sim.outcome.lists
    clicked_views = [e for e in sim.events if e["context"].get("source") == "recommend"]
    assert len(clicked_views) == sum(sim.outcome.clicks)
    assert all(e["context"]["request_id"].startswith("sim-rec-") for e in clicked_views)


def test_the_oracle_beats_popularity_by_the_truth_and_by_what_shoppers_did():
    config = SimulationConfig(seed=5, users=300, products=120)
    popular = run_shop("popularity", config, warm=6, days=6, k=10, epochs=1, workdir=None)
    oracle = run_shop("oracle", config, warm=6, days=6, k=10, epochs=1, workdir=None)
    for key in ("expected_clicks_per_1000", "clicks_per_1000", "expected_purchases_per_1000"):
        assert oracle[key]["value"] > popular[key]["value"], key
    # what happened tracks what the truth expected (draws of the same chances: within sampling noise)
    for shop in (popular, oracle):
        realized, expected = shop["clicks_per_1000"]["value"], shop["expected_clicks_per_1000"]["value"]
        assert abs(realized - expected) < 0.15 * expected


def test_a_server_takes_the_events_and_serves_the_lists(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    config = SimulationConfig(seed=3, users=300, products=100)
    result = run_shop("server", config, warm=12, days=2, k=5, epochs=1, workdir=tmp_path / "server")
    assert result["failed_calls"] == 0 and result["events_rejected"] == 0 and result["events_sent"] > 1000
    assert result["lists"] > 10 and result["versions"] == {"1": result["lists"]}
    assert result["expected_clicks_per_1000"]["value"] > 0


def test_rates_per_thousand_and_their_intervals():
    sim = ClosedLoopSimulation(SimulationConfig(seed=1, users=10, products=20, days=1))
    out = sim.outcome
    out.lists, out.impressions = 4, 40
    out.clicks, out.purchases = [1, 0, 2, 1], [0, 0, 1, 0]
    out.expected_clicks, out.expected_purchases = [1.0, 1.0, 1.0, 1.0], [0.2, 0.2, 0.2, 0.2]
    rates = per_thousand(out, seed=0)
    assert rates["clicks_per_1000"]["value"] == 100.0 and rates["expected_purchases_per_1000"]["value"] == 20.0
    low, high = rates["clicks_per_1000"]["ci95"]
    assert low <= 100.0 <= high
