"""The simulator's fraud looks like shopping: every order comes out of a session with a checkout
page and a form-filling delay, fraudsters browse before they buy, fraud is a small share of
orders, chargebacks follow their orders by 14-60 days, and the graph has links to find."""
from collections import defaultdict
from dataclasses import asdict

import numpy as np
import pytest
from hanzo.training.simulator import Simulation, SimulationConfig
from hanzo.training.simulator.world import DAY_MS, FORM_FILL_SECONDS, is_checkout_page

# Fraud five times the default rate on a small shop: a few percent of orders, every pattern present.
SMALL = SimulationConfig(seed=13, users=400, products=120, days=20, fraud_level=5)


@pytest.fixture(scope="module")
def small():
    return Simulation(SMALL).run()


def _sessions(events):
    sessions = defaultdict(list)
    for e in events:
        if e["session_id"]:
            sessions[e["session_id"]].append(e)
    return sessions


def _orders(events):
    return [e for e in events if e["event_type"] == "order"]


def test_every_order_follows_a_checkout_page_by_its_patterns_form_filling_time(small):
    sessions = _sessions(small.events)
    orders = _orders(small.events)
    assert orders
    fills = defaultdict(list)
    for order in orders:
        order_id = order["payload"]["order_id"]
        pattern = small.truth.fraud_orders.get(order_id, "legit")
        before = [e for e in sessions[order["session_id"]] if e["timestamp"] <= order["timestamp"]]
        checkouts = [e for e in before if is_checkout_page(e)]
        assert checkouts, order_id
        assert checkouts[-1]["context"].get("device") == order["payload"]["device_id"]
        seconds = (order["timestamp"] - checkouts[-1]["timestamp"]) / 1000
        low, high = FORM_FILL_SECONDS[pattern]
        assert low <= seconds <= high, (order_id, pattern, seconds)
        fills[pattern].append(seconds)
        # The purchases go in with the order, in its session, one per line.
        purchases = [e for e in before if e["event_type"] == "purchase" and e["payload"]["order_id"] == order_id]
        assert len(purchases) == len(order["payload"]["items"])
        assert all(e["timestamp"] == order["timestamp"] for e in purchases)
        # What was bought was put in the cart earlier in the session.
        carted = {e["payload"]["product_id"] for e in before if e["event_type"] == "add_to_cart"}
        assert {line["product_id"] for line in order["payload"]["items"]} <= carted
    assert set(fills) == {"legit", "card_testing", "account_takeover", "ring"}
    # Some honest shoppers are quicker than some takeovers (saved details).
    assert min(fills["legit"]) < max(fills["account_takeover"])


def test_fraudsters_browse_before_they_buy(small):
    sessions = _sessions(small.events)
    views = defaultdict(list)
    for order in _orders(small.events):
        pattern = small.truth.fraud_orders.get(order["payload"]["order_id"])
        if pattern:
            session = sessions[order["session_id"]]
            views[pattern].append(sum(e["event_type"] == "product_view" for e in session))
            assert session[0]["event_type"] == "page_view" and not is_checkout_page(session[0])  # lands as anyone
    assert any(n > 0 for n in views["card_testing"])
    assert max(views["card_testing"]) <= 3
    assert all(1 <= n <= 6 for n in views["account_takeover"])
    assert all(2 <= n <= 10 for n in views["ring"])


def test_fraud_is_a_small_share_of_orders(small):
    orders = {e["payload"]["order_id"] for e in _orders(small.events)}
    fraud = small.truth.fraud_orders
    assert set(fraud) <= orders
    assert 0 < len(fraud) / len(orders) < 0.05
    assert set(small.truth.fraud_actors) == set(fraud)
    assert set(fraud.values()) == {"card_testing", "account_takeover", "ring"}


def test_chargebacks_follow_their_orders_by_two_to_nine_weeks(small):
    placed = {e["payload"]["order_id"]: e["timestamp"] for e in _orders(small.events)}
    chargebacks = [e for e in small.events if e["event_type"] == "chargeback"]
    assert chargebacks
    assert {e["payload"]["order_id"] for e in chargebacks} == set(small.truth.chargebacks)
    for e in chargebacks:
        order_id = e["payload"]["order_id"]
        assert order_id in placed
        assert 14 * DAY_MS <= e["timestamp"] - placed[order_id] <= 60 * DAY_MS
        kind = small.truth.chargebacks[order_id]
        assert kind == ("fraud" if order_id in small.truth.fraud_orders else "friendly")


def test_the_same_seed_gives_the_same_world(small):
    again = Simulation(SMALL).run()
    assert again.events == small.events
    assert asdict(again.truth) == asdict(small.truth)


def test_takeover_devices_and_ring_drops_link_attacks():
    """A fraud-heavy shop: a takeover device used on several victims' accounts, a drop address
    used by two rings, and honest devices shared in a household."""
    sim = Simulation(SimulationConfig(seed=2, users=200, products=80, days=15, fraud_level=80)).run()
    truth = sim.truth
    ato_users, drop_rings, device_users = defaultdict(set), defaultdict(set), defaultdict(set)
    for order in _orders(sim.events):
        p, order_id = order["payload"], order["payload"]["order_id"]
        pattern = truth.fraud_orders.get(order_id)
        if pattern == "account_takeover":
            ato_users[p["device_id"]].add(order["user_id"])
        elif pattern == "ring":
            drop_rings[p["shipping_address_id"]].add(truth.fraud_actors[order_id])
        elif pattern is None:
            device_users[p["device_id"]].add(order["user_id"])
    assert max(len(users) for users in ato_users.values()) >= 2
    assert max(len(rings) for rings in drop_rings.values()) >= 2
    assert any(len(users) >= 2 for users in device_users.values())


def test_the_reseller_wave_begins_on_its_day_and_leaves_the_days_before_alone(small):
    from dataclasses import replace

    wave = Simulation(replace(SMALL, reseller_from_day=12)).run()
    start = wave.start_ms + 12 * DAY_MS
    resold = {o: p for o, p in wave.truth.fraud_orders.items() if p == "reseller"}
    orders = {e["payload"]["order_id"]: e for e in _orders(wave.events)}
    assert len(resold) > 10 and all(orders[o]["timestamp"] >= start for o in resold)
    assert all(10 <= len(orders[o]["payload"]["items"]) < 18 for o in resold)  # big baskets of cheap products
    assert len({orders[o]["payload"]["shipping_address_id"] for o in resold}) <= 3  # a few drops
    # its own stream: the orders before it began are those of the run without it

    def placed_before(events):
        return sorted((e["payload"]["order_id"], e["timestamp"], e["payload"]["amount"]) for e in _orders(events)
                      if e["timestamp"] < start)

    assert placed_before(wave.events) == placed_before(small.events) and placed_before(small.events)


def test_a_fad_lifts_its_products_from_its_day_until_it_ends():  # the taste shift of the gate's degrade run
    from dataclasses import replace

    sim = Simulation(replace(SMALL, days=6, fad_from_day=2, fad_share=0.1, fad_boost=1.5))
    before = sim.catalog.quality.copy()
    for day in range(2):
        sim._day(day)
    assert sim.fad_items is None
    sim._day(2)
    lifted = sim.fad_items.copy()
    assert len(lifted) == 12 and np.allclose(sim.catalog.quality[lifted], before[lifted] + 1.5)
    sim.end_fad(backlash=0.5)  # out of fashion: less than before the fad
    assert sim.fad_items is None and np.allclose(sim.catalog.quality[lifted], before[lifted] - 0.5)
