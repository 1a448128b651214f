"""Ingestion in process: per-event rejects by index, duplicates once, time rules, snapshot
and restart, the offline join, and the canonical files from the simulator and shared data."""
import time

import numpy as np
import pytest
from helpers import SHARED_DATA, shared_data, simulated_world

from hanzo.server.features.events import (EventError, check_record, format_timestamp, parse_timestamp,
                                          record_from_proto, record_to_proto)
from hanzo.server.features.formats import iter_records, read_catalog, read_records, write_records
from hanzo.server.features.offline import get_historical_features, load_log_records
from hanzo.server.features.service import FeatureService, FeatureStoreConfig
from hanzo.training.simulator import Simulation, SimulationConfig
from hanzo.v1 import commerce_pb2

NOW = int(time.time() * 1000)


def event(i, kind="product_view", ts=None, **payload):
    payload = payload or ({"product_id": f"p{i % 7}"} if kind == "product_view" else {})
    return {"event_id": f"e{i}", "event_type": kind, "timestamp": ts or NOW - 3_600_000 + i, "user_id": f"u{i % 3}",
            "session_id": f"s{i % 5}", "payload": payload, "context": {}}


def service(tmp_path, **kwargs) -> FeatureService:
    svc = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "data", **kwargs))
    svc.open()
    return svc


def test_timestamps_round_trip():
    ms = parse_timestamp("2013-09-02T13:09:01.250Z")
    assert format_timestamp(ms) == "2013-09-02T13:09:01.250Z"
    assert parse_timestamp("2013-09-02T15:09:01.250+02:00") == ms


@pytest.mark.parametrize("change, field", [
    ({"event_id": ""}, "event_id"),
    ({"event_type": "click"}, "event_type"),
    ({"session_id": ""}, "session_id"),
    ({"payload": {}}, "payload.product_id"),
    ({"payload": {"product_id": "p", "price": -1.0}}, "payload.price"),
    ({"payload": {"product_id": "p", "price": float("nan")}}, "payload.price"),
    ({"payload": {"product_id": 7}}, "payload.product_id"),
    ({"timestamp": NOW + 3_600_000}, "timestamp"),
])
def test_validation_names_the_field(change, field):
    record = {**event(1), **change}
    with pytest.raises(EventError) as info:
        check_record(record, max_future_ms=300_000, now_ms=NOW)
    assert info.value.field == field


def test_proto_and_json_map_one_to_one():
    record = {"event_id": "o1", "event_type": "order", "timestamp": NOW, "user_id": "u1", "session_id": "s1",
              "payload": {"order_id": "o1", "amount": 12.5, "card_id": "c", "items": [{"product_id": "p",
                          "quantity": 2.0, "price": 6.25}], "signals": {"V1": 0.5}}, "context": {"device": "d"}}
    message = commerce_pb2.Event()
    record_to_proto(record, message)
    assert record_from_proto(commerce_pb2.Event.FromString(message.SerializeToString())) == record


async def test_malformed_events_are_rejected_by_index_while_the_rest_go_in(tmp_path):
    svc = service(tmp_path)
    batch = [event(0), {**event(1), "event_type": "nope"}, EventError("line", "not JSON"), event(3),
             {**event(4), "timestamp": NOW + 86_400_000}]
    result = await svc.ingest(batch)
    assert result.accepted == 2
    assert [(r.index, r.field) for r in result.rejects] == [(1, "event_type"), (2, "line"), (4, "timestamp")]
    assert "ahead of the server's clock" in result.rejects[2].reason
    svc.close()


async def test_duplicates_count_once_within_and_across_batches(tmp_path):
    svc = service(tmp_path)
    first = await svc.ingest([event(0), event(1), event(0)])
    second = await svc.ingest([event(1), event(2)])
    assert (first.accepted, first.duplicates, second.accepted, second.duplicates) == (2, 1, 1, 1)
    views, _, _ = svc.store.gather("user", ["u0", "u1", "u2"], ["user_views_24h"], as_of=svc.store.watermark)
    assert views[:, 0].tolist() == [1.0, 1.0, 1.0]
    assert sum(len(b) for _, b in svc.log.replay()) == 3
    svc.close()


async def test_events_older_than_the_horizon_are_refused_with_the_reason(tmp_path):
    svc = service(tmp_path, dedup_horizon_hours=24)
    await svc.ingest([event(0)])
    result = await svc.ingest([event(1, ts=NOW - 3 * 86_400_000)])
    assert result.accepted == 0 and "older than the store's horizon" in result.rejects[0].reason
    svc.close()


async def test_catalog_stock_and_price_updates_take_effect_at_once(tmp_path):
    svc = service(tmp_path)
    await svc.ingest([
        {**event(0, "catalog_update", product_id="p9", title="Lamp", category=["Home", "Lighting"], price=20.0),
         "session_id": ""},
        {**event(1, "price_change", product_id="p9", price=18.0), "session_id": ""},
        {**event(2, "stock_update", product_id="p9", location="wh1", quantity=0.0), "session_id": ""},
    ])
    catalog = svc.store.catalog
    assert catalog.products["p9"]["price"] == 18.0 and catalog.products["p9"]["title"] == "Lamp"
    assert not catalog.in_stock("p9")
    price, _, _ = svc.store.gather("product", ["p9"], ["product_price"])
    assert price[0, 0] == 18.0
    svc.close()


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    return simulated_world(tmp_path_factory.mktemp("sim"), days=6, seed=11, users=200, products=120, fraud_level=10)


@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_restart_from_snapshot_and_log_tail_equals_the_running_store(tmp_path, small_world, backend, request):
    out, events = small_world
    options = {}
    if backend == "redis":
        request.getfixturevalue("redis_client")
        options = {"backend": "redis", "redis_url": request.getfixturevalue("redis_server")}
    svc = service(tmp_path, catalog=out / "catalog.jsonl", snapshot_every_events=600, **options)
    for i in range(0, len(events), 500):
        await svc.ingest(events[i:i + 500])
    await svc.background_settled()
    users = svc.store.entities["user"].keys
    names = [n for n in svc.store.feature_names("user") if svc.store.features[n].aggregation != "sequence"]
    before, _, _ = svc.store.gather("user", users, names)
    seq_before = svc.store.sequences("user", users, "user_recent_viewed")
    assert list((tmp_path / "data" / "snapshots").iterdir())  # snapshots were taken along the way
    svc._writer.shutdown(wait=True)
    svc.log.close()  # a stop without the final snapshot: the restart replays the log tail
    again = service(tmp_path, catalog=out / "catalog.jsonl", **options)
    after, _, _ = again.store.gather("user", users, names)
    assert np.array_equal(before, after)
    assert again.store.sequences("user", users, "user_recent_viewed") == seq_before
    assert (await again.ingest(events[:500])).duplicates == 500
    again.close()


async def test_offline_join_equals_online_values_at_each_moment(tmp_path, small_world):
    out, events = small_world
    svc = service(tmp_path, catalog=out / "catalog.jsonl")
    moments, online = [], []
    for i in range(0, len(events), 700):
        await svc.ingest(events[i:i + 700])
        keys = svc.store.entities["product"].keys[:30]
        values, missing, _ = svc.store.gather("product", keys, svc.store.feature_names("product"))
        moments.append((keys, svc.store.watermark))
        online.append((values, missing))
    svc.close()
    records = load_log_records(tmp_path / "data")
    rows = [(key, ts) for keys, ts in moments for key in keys]
    offline = get_historical_features(records, "product", rows, svc.store.feature_names("product"),
                                      catalog=out / "catalog.jsonl")
    assert np.array_equal(np.concatenate([v for v, _ in online]), offline.values)
    assert np.array_equal(np.concatenate([m for _, m in online]), offline.missing)


def test_offline_join_never_sees_the_future(small_world):
    out, events = small_world
    user = next(e["user_id"] for e in events if e["event_type"] == "purchase" and e["user_id"])
    purchases = [e["timestamp"] for e in events if e["event_type"] == "purchase" and e["user_id"] == user]
    first = purchases[0]
    got = get_historical_features(events, "user", [(user, first - 1), (user, first)],
                                  ["user_purchase_count_7d", "user_recent_bought"], catalog=out / "catalog.jsonl")
    assert got.values[:, 0].tolist() == [0.0, float(sum(1 for t in purchases if t == first))]
    assert got.sequences["user_recent_bought"][0] == []


def test_simulator_is_seeded_and_writes_the_canonical_formats(tmp_path, small_world):
    out, _ = small_world
    a = Simulation(SimulationConfig(seed=5, users=50, products=40, days=3)).run().events
    b = Simulation(SimulationConfig(seed=5, users=50, products=40, days=3)).run().events
    assert a == b
    catalog = read_catalog(out / "catalog.jsonl")
    assert all(p["category"] and p["title"] and p["price"] > 0 and p["cost"] < p["price"] for p in catalog)
    now = int(time.time() * 1000)
    bad = [r for _, r in iter_records(out / "events.jsonl.gz")
           if isinstance(r, EventError) or _invalid(r, now)]
    assert not bad
    kinds = {r["event_type"] for _, r in iter_records(out / "events.jsonl.gz")}
    assert {"page_view", "product_view", "add_to_cart", "purchase", "search", "order", "chargeback",
            "price_change"} <= kinds
    path = tmp_path / "plain.jsonl"
    write_records(path, a[:10])
    assert read_records(path) == a[:10]


def _invalid(record, now):
    try:
        check_record(record, 10**15, now)
    except EventError:
        return True
    return False




@pytest.mark.parametrize("name", [pytest.param(name, marks=shared_data(name, "events.jsonl.gz"))
                                  for name in ("tafeng", "yoochoose", "cdnow", "fraud_ulb", "groceries")])
def test_shared_data_sets_ingest_in_time_order_without_rejects(tmp_path, name):
    svc = service(tmp_path / name)
    records = sorted(read_records(SHARED_DATA / name / "events.jsonl.gz"), key=lambda r: r["timestamp"])[:30000]
    for start in range(0, len(records), 5000):
        result = svc.ingest_blocking(records[start:start + 5000])
        assert not result.rejects, (name, result.rejects[:3])
    assert svc.applied_seq == len({r["event_id"] for r in records})
    svc.close()
