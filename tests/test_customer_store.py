"""Customers' lifetime features kept by the feature store, embedded and in a real Redis: CDNOW's
purchases replayed through the store read as the nightly batch computes them from the file, and
a customer back after months still has a whole history."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from helpers import shared_data
from test_customers import CDNOW

from hanzo.server.customers.lifetime import FEATURES, lifetime_features
from hanzo.server.customers.store_lifetime import read_lifetime
from hanzo.server.features.events import record_from_json
from hanzo.server.features.tables import WindowTable

DAY_MS = 86_400_000
END = int(np.datetime64("1997-09-30", "D").astype(np.int64))


def purchase(user: str, ms: int, amount: float, n: int) -> dict:
    return {"event_id": f"e{n}", "event_type": "purchase", "timestamp": ms, "user_id": user, "session_id": "s",
            "payload": {"amount": amount, "product_id": "p1"}, "context": {}}


def test_a_customer_back_after_months_keeps_a_whole_life(make_store):
    store = make_store()
    day = 20_000 * DAY_MS
    # two purchases on one day, one late in the same batch, then a second customer
    store.apply([purchase("a", day + 5_000, 10.0, 1), purchase("a", day + 3_600_000, 5.0, 2),
                 purchase("b", day + 2 * DAY_MS, 8.0, 3)])
    store.apply([purchase("a", day + 40 * DAY_MS, 20.0, 4), purchase("a", day + 39 * DAY_MS, 1.0, 5)])
    as_of = day + 200 * DAY_MS + 43_200_000  # half a year later: every short window is empty
    lifetime, bought = read_lifetime(store, ["a", "b", "nobody"], as_of)
    assert bought.tolist() == [True, True, False]
    a = dict(zip(FEATURES, lifetime.matrix[0]))
    assert a["purchase_days"] == 3 and a["days_since_first"] == 200 and a["days_since_last"] == 160
    assert a["total_spend"] == 36.0 and a["purchases_last_30_days"] == 0 and a["purchases_last_90_days"] == 0
    users = np.array(["a", "a", "b", "a", "a"], object)
    days = np.array([20_000, 20_000, 20_002, 20_040, 20_039])
    spend = np.array([10.0, 5.0, 8.0, 20.0, 1.0])
    np.testing.assert_allclose(lifetime.matrix, lifetime_features(users, days, spend, as_of // DAY_MS).matrix)
    # and their staples: the products last bought are read as they were
    assert store.sequences("user", ["a"], "user_recent_bought", as_of) == [["p1"] * 4]
    if hasattr(store, "redis"):  # kept as long as the account, never expired by Redis's clock
        kept = [t for t in store.tables if t.entity == "user" and not isinstance(t, WindowTable)]
        assert kept and all(store.redis.pttl(store._key(t, "a")) == -1 for t in kept
                            if store.redis.exists(store._key(t, "a")))


@shared_data("cdnow", "events.jsonl.gz")
def test_cdnow_replayed_through_the_store_reads_as_the_batch_computes(make_store):
    records = [record_from_json(json.loads(line)) for line in gzip.open(CDNOW)]
    records.sort(key=lambda r: r["timestamp"])
    store = make_store()
    for start in range(0, len(records), 5_000):
        store.apply(records[start:start + 5_000])
    as_of = (END + 1) * DAY_MS - 1  # the close of the last day
    users = sorted({r["user_id"] for r in records})
    lifetime, bought = read_lifetime(store, users, as_of)
    assert bought.all()
    batch = lifetime_features(np.array([r["user_id"] for r in records], object),
                              np.array([r["timestamp"] // DAY_MS for r in records]),
                              np.array([r["payload"]["amount"] for r in records]), END)
    assert (batch.user_ids == lifetime.user_ids).all()
    np.testing.assert_allclose(lifetime.matrix, batch.matrix, rtol=1e-5)


def test_a_spend_past_the_largest_double_neither_jams_nor_differs(make_store):
    """A lifetime total may overflow to inf; Redis must take it as the embedded store does, and
    the batches after it still apply."""
    store = make_store()
    day = 20_000 * DAY_MS
    store.apply([purchase("big", day, 1.5e308, 1), purchase("big", day + 1, 1.5e308, 2)])
    store.apply([purchase("small", day + 2, 3.0, 3)])
    values = store.read("user", ["big", "small"], ["user_lifetime_spend", "user_purchase_days"], day + 10).values
    assert np.isinf(values[0, 0]) and values[1].tolist() == [3.0, 1.0]


def test_a_price_whose_amount_overflows_is_refused_by_name():
    from hanzo.server.features.events import EventError, check_record

    record = purchase("u", 20_000 * DAY_MS, 1.0, 1)
    record["payload"] = {"product_id": "p1", "price": 1e300, "quantity": 1e10}
    with pytest.raises(EventError) as refused:
        check_record(record, 300_000, 20_000 * DAY_MS)
    assert refused.value.field == "payload.price"


def test_a_late_purchase_day_counts_once_however_the_batches_fall(make_store):
    day = 20_000 * DAY_MS
    together, apart = make_store(), make_store()
    events = [purchase("u", day + 10 * DAY_MS, 4.0, 1), purchase("u", day + 9 * DAY_MS, 2.0, 2),
              purchase("u", day + 9 * DAY_MS + 5, 2.0, 3), purchase("u", day - 20 * DAY_MS, 1.0, 4),
              purchase("u", day + 40 * DAY_MS, 1.0, 5), purchase("u", day + 12 * DAY_MS, 1.0, 6)]
    together.apply(events)
    for event in events:
        apart.apply([event])
    names = ["user_purchase_days", "user_first_purchase_day", "user_last_purchase_day"]
    for store in (together, apart):
        # every late day within the 31 days ingest accepts behind its clock is counted once
        assert store.read("user", ["u"], names, day + 60 * DAY_MS).values[0].tolist() == [
            5.0, 20_000 - 20, 20_000 + 40]
