"""The online store against a brute-force reference, for every shipped feature, at several
moments of a simulated stream."""
import numpy as np
import pytest
from feature_reference import reference_value

from hanzo.server.features.definitions import FEATURES
from hanzo.server.features.store import FeatureStore
from hanzo.training.simulator import Simulation, SimulationConfig


@pytest.fixture(scope="module")
def stream():
    sim = Simulation(SimulationConfig(seed=3, users=250, products=150, days=9, fraud_level=20)).run()
    # Chargebacks fall weeks later; stop the stream at the simulation's end.
    end = sim.start_ms + 9 * 86_400_000
    return sim.initial_catalog(), [e for e in sim.events if e["timestamp"] < end]


def sample_keys(store, entity, events, n=25):
    keys = store.entities[entity].keys
    rng = np.random.default_rng(0)
    return [keys[i] for i in rng.choice(len(keys), size=min(n, len(keys)), replace=False)] + ["never-seen"]


@pytest.mark.parametrize("checkpoint", [0.35, 0.7, 1.0])
def test_every_feature_matches_the_reference(stream, checkpoint, make_store):
    catalog, events = stream
    events = events[: int(len(events) * checkpoint)]
    store = make_store()
    store.load_catalog(catalog)
    for i in range(0, len(events), 400):
        store.apply(events[i:i + 400])
    as_of = store.watermark
    checked = 0
    for entity in ("user", "session", "product", "card", "device", "address"):
        keys = sample_keys(store, entity, events)
        names = store.feature_names(entity)
        scalar = [n for n in names if store.features[n].aggregation != "sequence"]
        values, missing, layout = store.gather(entity, keys, scalar)
        for name, col, width in layout:
            feature = store.features[name]
            for r, key in enumerate(keys):
                expected = reference_value(feature, key, events, as_of, store.catalog.category_slot)
                got = values[r, col:col + width]
                if expected is None or key == "never-seen":
                    assert missing[r, col:col + width].all(), (name, key)
                    assert (got == feature.default).all()
                    continue
                assert not missing[r, col:col + width].any(), (name, key)
                np.testing.assert_allclose(got, np.atleast_1d(expected), rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")
                checked += 1
        for name in (n for n in names if store.features[n].aggregation == "sequence"):
            got = store.sequences(entity, keys, name)
            for key, items in zip(keys, got):
                expected = reference_value(store.features[name], key, events, as_of, store.catalog.category_slot)
                assert items == expected, (name, key)
                checked += 1
    assert checked > 500


def test_a_read_ahead_of_the_clock_lets_old_buckets_fall_out(stream, make_store):
    """Windows slide with as_of: read 12 hours ahead, the oldest 12 hours no longer count."""
    catalog, events = stream
    store = make_store()
    store.apply(events)
    feature = store.features["product_views_24h"]
    keys = store.entities["product"].keys
    as_of = store.watermark + 12 * 3_600_000
    values, _, _ = store.gather("product", keys, [feature.name], as_of=as_of)
    now, _, _ = store.gather("product", keys, [feature.name])
    assert (values <= now).all() and (values < now).any()
    for r, key in enumerate(keys[:30]):
        assert values[r, 0] == reference_value(feature, key, events, as_of, None)
    for r, key in enumerate(keys):
        assert values[r, 0] == reference_value(feature, key, events, as_of, None)


def test_late_event_lands_only_where_its_window_holds_it(make_store):
    store = make_store()
    hour, day = 3_600_000, 86_400_000
    t0 = 100 * day

    def order(ts, event_id):
        return {"event_id": event_id, "event_type": "order", "timestamp": ts, "user_id": "u1", "session_id": "s",
                "payload": {"order_id": event_id, "amount": 10.0, "card_id": "c1"}, "context": {}}

    store.apply([order(t0, "a")])
    store.apply([order(t0 + 2 * day, "b")])
    store.apply([order(t0 + 2 * day - 3 * hour, "late-in-24h")])  # 3 h late: inside 24h and 30d
    store.apply([order(t0 - 10 * day, "late-in-30d")])  # 12 days late: only the 30d window holds it
    values, _, layout = store.gather("user", ["u1"], ["user_orders_24h", "user_order_count_30d"])
    assert values[0].tolist() == [2.0, 4.0]


def test_shipped_features_cover_the_issue():
    names = {f.name for f in FEATURES}
    for needed in ("user_purchase_count_7d", "user_avg_order_value_30d", "user_recent_viewed", "user_recent_bought",
                   "session_duration", "product_view_to_purchase_rate_30d", "product_views_7d",
                   "user_category_affinity_30d", "user_orders_1h", "user_distinct_cards_30d",
                   "card_distinct_shipping_addresses_30d", "user_distinct_devices_30d"):
        assert needed in names


def test_eviction_reclaims_forgotten_entities_and_changes_no_answer(stream):
    catalog, events = stream
    store = FeatureStore()
    store.load_catalog(catalog)
    for i in range(0, len(events), 500):
        store.apply(events[i:i + 500])
    before = {}
    for entity in ("session", "card", "device", "address", "user"):
        keys = list(store.entities[entity].keys)
        names = [n for n in store.feature_names(entity) if store.features[n].aggregation != "sequence"]
        before[entity] = (keys, names, *store.gather(entity, keys, names)[:2])
    sessions = len(store.entities["session"])
    dropped = store.evict(min_share=0.0)
    assert dropped["session"] > 0 and len(store.entities["session"]) == sessions - dropped["session"]
    assert "user" not in dropped
    for entity, (keys, names, values, missing) in before.items():
        after, after_missing, _ = store.gather(entity, keys, names)
        np.testing.assert_array_equal(after, values)
        np.testing.assert_array_equal(after_missing, missing)
    # The store goes on taking events after a compaction.
    more = [{**e, "event_id": e["event_id"] + "-again", "timestamp": store.watermark + 1000}
            for e in events[-200:] if e["event_type"] == "product_view"]
    store.apply(more)
    assert store.gather("session", [more[0]["session_id"]], ["session_event_count_24h"])[0][0, 0] >= 1
