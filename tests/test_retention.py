"""Retention on a real server: a shopper whose events are all older than retention_days (by the
store's clock) is gone from the log, the snapshots and the online store after the pass the
server starts by itself, while the catalogue's old events, the stock an old purchase moved and
the recent shoppers are as they were; the pass never stops the server taking events. And
erasing a shopper of the unnamed shop keeps the stock their purchases moved."""
import json
import time

import grpc
import numpy as np
import pytest
from helpers import opened_store
from test_erasure import event, one_product_world
from test_tenancy import read

from hanzo.server.features.offline import load_log_records
from hanzo.v1 import admin_pb2, admin_pb2_grpc, commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow
DAY_S = 86_400


def at(e, seconds_ago: float) -> None:
    e.timestamp.FromMilliseconds(int((time.time() - seconds_ago) * 1000))


def old_and_new(stub) -> None:
    """Old: a stock level, a catalogue entry, a shopper's views, order and purchase (500 days
    ago). New: another shopper's view (now)."""
    old = commerce_pb2.EventBatch()
    for event_id, kind, user, payload in (
            ("o1", "stock_update", None, {"product_id": "p1", "quantity": 10.0}),
            ("o2", "catalog_update", None, {"product_id": "p-old", "title": "an old thing", "price": 3.0}),
            ("o3", "product_view", "old-u", {"product_id": "p1"}),
            ("o4", "order", "old-u", {"order_id": "ord-old", "amount": 9.0, "email": "old@example.org"}),
            ("o5", "purchase", "old-u", {"product_id": "p1", "quantity": 2.0})):
        e = old.events.add(event_id=event_id, event_type=kind, session_id="s-old" if user else "")
        if user:
            e.user_id = user
        at(e, 500 * DAY_S)
        for name, value in payload.items():
            setattr(e.payload, name, value)
    assert stub.IngestEvents(old, timeout=10).accepted == 5
    new = commerce_pb2.EventBatch()
    event(new, "n1", "product_view", "new-u", "s-new", product_id="p1")
    assert stub.IngestEvents(new, timeout=10).accepted == 1


def wait_for_line(server, text: str, limit_s: float = 60.0) -> dict:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for line in server.log_path.read_text().splitlines():
            if text in line:
                return json.loads(line)
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} in the server's log within {limit_s} s")


def test_a_shopper_older_than_the_retention_is_gone_and_the_catalogue_is_not(tmp_path, served):
    world_dir = one_product_world(tmp_path)
    settings = tmp_path / "hanzo.toml"
    settings.write_text("[features]\nretention_days = 400\nretention_every_days = 7\n")
    server = served(world_dir, "--config", str(settings))
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    old_and_new(stub)
    new_before = read(stub, "", "user", ["new-u"])[1]
    assert server.terminate() == 0

    again = served(world_dir, "--config", str(settings))  # the pass is due: it starts with the server
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(again.url))
    taken = 0
    for n in range(200):  # the server takes events while the pass runs
        batch = commerce_pb2.EventBatch()
        event(batch, f"m{n}", "product_view", "new-u", "s-new", product_id="p1")
        try:
            taken += stub.IngestEvents(batch, timeout=10).accepted
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
        if '"retention pass"' in again.log_path.read_text():
            break
        time.sleep(0.01)
    done = wait_for_line(again, '"retention pass"')
    assert done["events_removed"] == 3 and taken > 0  # the view, the order, and the purchase but for its stock
    nobody = read(stub, "", "user", ["never-seen"])[1:3]
    np.testing.assert_array_equal(read(stub, "", "user", ["old-u"])[2], nobody[1])
    assert read(stub, "", "user", ["new-u"])[1][0].sum() >= new_before[0].sum()
    assert again.terminate() == 0

    records = load_log_records(tmp_path / "data")
    assert not [r for r in records if r.get("user_id") == "old-u" or r.get("session_id") == "s-old"]
    assert {r["event_id"] for r in records if r["event_type"] in ("stock_update", "catalog_update")} == {"o1", "o2"}
    purchases = [r for r in records if r["event_type"] == "purchase"]
    assert len(purchases) == 1 and purchases[0]["user_id"] is None and purchases[0]["payload"] == {
        "product_id": "p1", "quantity": 2.0}
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            held = path.read_bytes()
            assert b"old-u" not in held and b"ord-old" not in held and b"s-old" not in held, path
    store = opened_store(tmp_path / "data")
    try:
        assert store.store.catalog.stock["p1"] == {"": 8.0}  # 10, less the old purchase's 2
        assert "p-old" in store.store.catalog.products
    finally:
        store.close()


def test_erasing_a_shopper_of_the_unnamed_shop_keeps_the_stock_they_moved(tmp_path, served):
    world_dir = one_product_world(tmp_path)
    server = served(world_dir)
    channel = grpc.insecure_channel(server.url)
    stub, admin = commerce_pb2_grpc.CommerceStub(channel), admin_pb2_grpc.AdminStub(channel)
    batch = commerce_pb2.EventBatch()
    stock = batch.events.add(event_id="k1", event_type="stock_update")
    stock.timestamp.GetCurrentTime()
    stock.payload.product_id, stock.payload.quantity = "p1", 10.0
    event(batch, "k2", "purchase", "alice", "s-alice", product_id="p1", quantity=3.0)
    assert stub.IngestEvents(batch, timeout=10).accepted == 2
    receipt = json.loads(admin.Forget(admin_pb2.ForgetRequest(user_id="alice"), timeout=60).receipt_json)
    assert receipt["events_removed_by_type"] == {"anonymised purchase": 1}
    assert server.terminate() == 0
    records = load_log_records(tmp_path / "data")
    assert not [r for r in records if r.get("user_id") == "alice" or r.get("session_id") == "s-alice"]
    store = opened_store(tmp_path / "data")
    try:
        assert store.store.catalog.stock["p1"] == {"": 7.0}
    finally:
        store.close()


def test_search_follows_the_catalogue_of_a_rebuilt_store(tmp_path, served):
    """After an erasure the server's store is a new one, catalogue and all: search indexes the
    new catalogue, so a product added after the erasure is found."""
    world_dir = one_product_world(tmp_path, "a blue teapot")
    server = served(world_dir)
    channel = grpc.insecure_channel(server.url)
    stub, admin = commerce_pb2_grpc.CommerceStub(channel), admin_pb2_grpc.AdminStub(channel)
    assert [h.product_id for h in stub.Search(commerce_pb2.SearchRequest(query="teapot", k=5), timeout=10).items] \
        == ["p1"]
    batch = commerce_pb2.EventBatch()
    event(batch, "v1", "product_view", "alice", "s-alice", product_id="p1")
    assert stub.IngestEvents(batch, timeout=10).accepted == 1
    assert admin.Forget(admin_pb2.ForgetRequest(user_id="alice"), timeout=60).events_removed == 1
    added = commerce_pb2.EventBatch()
    e = added.events.add(event_id="c1", event_type="catalog_update")
    e.timestamp.GetCurrentTime()
    e.payload.product_id, e.payload.title, e.payload.price = "p2", "a shiny kettle", 7.0
    assert stub.IngestEvents(added, timeout=10).accepted == 1
    hits = stub.Search(commerce_pb2.SearchRequest(query="kettle", k=5), timeout=10).items
    assert [h.product_id for h in hits] == ["p2"]
    assert server.terminate() == 0


def test_a_pass_is_due_only_once_the_period_has_moved_past_the_last_cutoff(tmp_path):
    """The catalogue's events and the stock of old purchases stay in the log with their old
    times: the next pass is due from the last pass's cutoff, not from the log's oldest event."""
    from hanzo.server.features import retention
    from hanzo.server.features.service import FeatureStoreConfig

    day = retention.DAY_MS
    config = FeatureStoreConfig(data_dir=tmp_path, retention_days=400, retention_every_days=7)
    now = 1_800_000_000_000
    assert not retention.due(config, None, now)  # nothing held
    assert not retention.due(config, now - 405 * day, now)  # within the period and its slack
    assert retention.due(config, now - 408 * day, now)
    retention.mark(tmp_path, now - 400 * day)
    since = retention.retained_since(tmp_path)
    assert since == now - 400 * day
    assert not retention.due(config, since, now + 6 * day)
    assert retention.due(config, since, now + 8 * day)
    for off in (FeatureStoreConfig(data_dir=tmp_path, retention_days=0),
                FeatureStoreConfig(data_dir=tmp_path, retention_days=400, log_retention_days=30)):
        assert not retention.due(off, now - 1000 * day, now)
