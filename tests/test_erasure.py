"""`hanzo forget` on a real store: the shopper's events (their own, their sessions' anonymous
ones, the chargeback of their order) leave the log; no byte of their id, session, email
pseudonym or card pseudonym is left anywhere in the data directory; a restarted server
answers defaults for them and the same answers as before for everyone else, including the
same user id at another merchant."""
import json
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from test_tenancy import read

from hanzo.server.features.offline import load_log_records
from hanzo.server.features.pseudonyms import Pseudonyms, store_key
from hanzo.server.features.tenancy import scoped
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow


def event(batch, event_id, kind, user=None, session="", **payload):
    e = batch.events.add(event_id=event_id, event_type=kind, session_id=session)
    if user is not None:
        e.user_id = user
    e.timestamp.GetCurrentTime()
    for name, value in payload.items():
        setattr(e.payload, name, value)


def one_product_world(tmp_path, title="a thing"):
    """A world folder whose catalogue holds one product, p1."""
    world_dir = tmp_path / "world"
    world_dir.mkdir(exist_ok=True)
    (world_dir / "catalog.jsonl").write_text(json.dumps({"product_id": "p1", "title": title, "price": 5.0}) + "\n")
    return world_dir


def one_product_server(tmp_path, served):
    """A server on a fresh store whose catalogue holds one product; (server, its world folder)."""
    world_dir = one_product_world(tmp_path)
    return served(world_dir), world_dir


def shop_batch(merchant):
    batch = commerce_pb2.EventBatch(merchant_id=merchant)
    event(batch, "a1", "product_view", "alice", "s-alice", product_id="p1")
    event(batch, "a2", "page_view", None, "s-alice")  # anonymous, in alice's session
    event(batch, "a3", "order", "alice", "s-alice", order_id="o-alice", amount=30.0, email="alice@example.org",
          card_id="4000000000000002", ip="198.51.100.7")
    event(batch, "a4", "chargeback", None, "", order_id="o-alice")
    event(batch, "a5", "order", None, "s-alice", order_id="o-guest", amount=3.0)  # placed in her session
    event(batch, "a6", "chargeback", None, "", order_id="o-guest")
    event(batch, "b1", "product_view", "bob", "s-bob", product_id="p1")
    event(batch, "b2", "order", "bob", "s-bob", order_id="o-bob", amount=12.0, email="bob@example.org",
          card_id="4000000000000002", ip="198.51.100.8")
    return batch


def test_forget_leaves_nothing_of_the_shopper_and_everything_of_the_others(tmp_path, served):
    server, world_dir = one_product_server(tmp_path, served)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    for merchant in ("shop-a", "shop-b"):
        ack = stub.IngestEvents(shop_batch(merchant), timeout=10)
        assert ack.accepted == 8, ack
    before = {(m, u): read(stub, m, "user", [u])[1:3] for m in ("shop-a", "shop-b") for u in ("alice", "bob")}
    assert server.terminate() == 0

    done = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "forget", "--data-dir",
                           str(tmp_path / "data"), "--merchant", "shop-a", "--user", "alice"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["events_removed_by_type"] == {"chargeback": 2, "order": 2, "page_view": 1, "product_view": 1}
    assert receipt["events_kept"] == 10 and receipt["orders"] == 2 and receipt["sessions"] == 1

    data = tmp_path / "data"
    pseudonyms = Pseudonyms(store_key("", data))
    gone = [scoped("shop-a", "alice"), scoped("shop-a", "s-alice"), scoped("shop-a", "o-alice"),
            pseudonyms.of(scoped("shop-a", "alice@example.org")), pseudonyms.of(scoped("shop-a", "198.51.100.7"))]
    for path in data.rglob("*"):
        if path.is_file():
            held = path.read_bytes()
            assert not [g for g in gone if g.encode() in held], path
    assert "alice" not in (data / "audit.jsonl").read_text()  # the receipt's line names a pseudonym
    records = load_log_records(data)
    assert len(records) == 10 and not [r for r in records if r.get("user_id") == scoped("shop-a", "alice")]

    again = served(world_dir)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(again.url))
    values, missing = read(stub, "shop-a", "user", ["alice"])[1:3]
    nobody = read(stub, "shop-a", "user", ["never-seen"])[1:3]
    np.testing.assert_array_equal(values, nobody[0])
    np.testing.assert_array_equal(missing, nobody[1])
    for key in (("shop-a", "bob"), ("shop-b", "alice"), ("shop-b", "bob")):
        np.testing.assert_array_equal(read(stub, *key[:1], "user", [key[1]])[1], before[key][0], err_msg=str(key))
    # the card both used is known now by bob's order alone at shop-a
    _, card, _, _ = read(stub, "shop-a", "card", ["4000000000000002"])
    from test_feature_server import _feature_names

    names = _feature_names("card")
    assert card[0, names.index("card_distinct_users_30d")] == 1
    assert again.terminate() == 0


def test_the_admin_forget_rpc_erases_from_a_running_server_which_serves_on(tmp_path, served):
    from hanzo.v1 import admin_pb2, admin_pb2_grpc

    server, _ = one_product_server(tmp_path, served)
    channel = grpc.insecure_channel(server.url)
    stub, admin = commerce_pb2_grpc.CommerceStub(channel), admin_pb2_grpc.AdminStub(channel)
    for merchant in ("shop-a", "shop-b"):
        assert stub.IngestEvents(shop_batch(merchant), timeout=10).accepted == 8
    bob = read(stub, "shop-a", "user", ["bob"])[1]
    with pytest.raises(grpc.RpcError) as bad:
        admin.Forget(admin_pb2.ForgetRequest(merchant_id="shop-a|x", user_id="alice"), timeout=10)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    receipt = admin.Forget(admin_pb2.ForgetRequest(merchant_id="shop-a", user_id="alice"), timeout=60)
    assert (receipt.events_removed, receipt.events_kept) == (6, 10)
    assert json.loads(receipt.receipt_json)["orders"] == 2
    nobody = read(stub, "shop-a", "user", ["never-seen"])[1:3]
    np.testing.assert_array_equal(read(stub, "shop-a", "user", ["alice"])[2], nobody[1])
    np.testing.assert_array_equal(read(stub, "shop-a", "user", ["bob"])[1], bob)
    assert read(stub, "shop-b", "user", ["alice"])[2].sum() < nobody[1].sum()  # shop-b's alice is still there
    data = tmp_path / "data"
    for path in data.rglob("*"):
        if path.is_file():
            assert b"shop-a|alice" not in path.read_bytes(), path
    # the server takes batches on the rebuilt store, and the shopper may start afresh
    again = commerce_pb2.EventBatch(merchant_id="shop-a")
    event(again, "a1", "product_view", "alice", "s-alice-2", product_id="p1")
    assert stub.IngestEvents(again, timeout=10).accepted == 1
    assert server.terminate() == 0
    lines = [json.loads(line) for line in (data / "audit.jsonl").read_text().splitlines()]
    forgets = [r for r in lines if r["what"].endswith("/Forget")]
    assert [r["result"] for r in forgets] == ["INVALID_ARGUMENT", "OK"] and forgets[1]["merchant_id"] == "shop-a"
    assert "alice" not in (data / "audit.jsonl").read_text()
    assert len(load_log_records(data)) == 11


def test_forgetting_a_shopper_the_store_never_held_rewrites_nothing(tmp_path, served):
    server, _ = one_product_server(tmp_path, served)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    assert stub.IngestEvents(shop_batch("shop-a"), timeout=10).accepted == 8
    assert server.terminate() == 0
    log_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "data" / "log").iterdir()}
    done = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "forget", "--data-dir",
                           str(tmp_path / "data"), "--merchant", "shop-b", "--user", "alice"],
                          capture_output=True, text=True, timeout=120, check=True)
    receipt = json.loads(done.stdout)
    assert receipt["events_removed"] == 0 and receipt["rewritten"] == [] and receipt["events_kept"] == 8
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "data" / "log").iterdir()} == log_files


def test_with_keep_links_the_shoppers_orders_stay_as_no_ones(tmp_path, served):
    server, _ = one_product_server(tmp_path, served)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    assert stub.IngestEvents(shop_batch("shop-a"), timeout=10).accepted == 8
    assert server.terminate() == 0
    settings = tmp_path / "hanzo.toml"
    settings.write_text(f'[features]\ndata_dir = "{tmp_path / "data"}"\nerasure_keeps_fraud_links = true\n')
    done = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "forget", "--config", str(settings),
                           "--merchant", "shop-a", "--user", "alice"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["events_removed_by_type"] == {"anonymised chargeback": 2, "anonymised order": 2, "page_view": 1,
                                                 "product_view": 1}
    assert receipt["fraud_network"].startswith("anonymous links kept")
    records = load_log_records(tmp_path / "data")
    orders = [r for r in records if r["event_type"] == "order" and not r.get("user_id")]
    assert len(orders) == 2 and all(r["payload"]["order_id"].startswith("erased-") for r in orders)
    charged = {r["payload"]["order_id"] for r in records if r["event_type"] == "chargeback"}
    assert charged == {r["payload"]["order_id"] for r in orders}  # each still joins its order
    held = (tmp_path / "data" / "log").read_bytes() if (tmp_path / "data" / "log").is_file() else b"".join(
        p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert b"shop-a|alice" not in held and b"o-alice" not in held and b"s-alice" not in held


def test_a_caller_giving_up_midway_leaves_the_erasure_to_finish(tmp_path, served):
    from hanzo.v1 import admin_pb2, admin_pb2_grpc

    server, _ = one_product_server(tmp_path, served)
    channel = grpc.insecure_channel(server.url)
    stub, admin = commerce_pb2_grpc.CommerceStub(channel), admin_pb2_grpc.AdminStub(channel)
    for start in range(0, 60_000, 5_000):  # enough events that the rebuild outlasts the caller's deadline
        batch = commerce_pb2.EventBatch(merchant_id="shop-a")
        for i in range(start, start + 5_000):
            event(batch, f"e{i}", "product_view", "alice" if i % 10 == 0 else f"u{i % 700}", "s", product_id="p1")
        assert stub.IngestEvents(batch, timeout=60).accepted == 5_000
    with pytest.raises(grpc.RpcError) as gone:
        admin.Forget(admin_pb2.ForgetRequest(merchant_id="shop-a", user_id="alice"), timeout=0.05)
    assert gone.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    while True:  # the erasure goes on; once it is done, a second finds nothing left
        try:
            again = admin.Forget(admin_pb2.ForgetRequest(merchant_id="shop-a", user_id="alice"), timeout=60)
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            time.sleep(0.1)
    assert again.events_removed == 0 and again.events_kept == 54_000
    after = commerce_pb2.EventBatch(merchant_id="shop-a")  # written into the store the server took up
    event(after, "late", "product_view", "bob", "s-bob", product_id="p1")
    assert stub.IngestEvents(after, timeout=10).accepted == 1
    assert server.terminate() == 0
    records = load_log_records(tmp_path / "data")
    assert len(records) == 54_001 and not [r for r in records if r.get("user_id") == "shop-a|alice"]


def test_with_refuse_the_shoppers_later_events_are_refused_and_nothing_else(tmp_path, served):
    """erasure_later_events = "refuse": after the Admin Forget the shopper's new events are
    rejected naming user_id (the same user id at another merchant is not), across a restart;
    the list holds a digest that is none of the shopper's ids or pseudonyms."""
    from hanzo.v1 import admin_pb2, admin_pb2_grpc

    world_dir = one_product_world(tmp_path)
    settings = tmp_path / "hanzo.toml"
    settings.write_text('[features]\nerasure_later_events = "refuse"\n')
    server = served(world_dir, "--config", str(settings))
    channel = grpc.insecure_channel(server.url)
    stub, admin = commerce_pb2_grpc.CommerceStub(channel), admin_pb2_grpc.AdminStub(channel)
    for merchant in ("shop-a", "shop-b"):
        assert stub.IngestEvents(shop_batch(merchant), timeout=10).accepted == 8
    receipt = admin.Forget(admin_pb2.ForgetRequest(merchant_id="shop-a", user_id="alice"), timeout=60)
    assert json.loads(receipt.receipt_json)["later_events"].startswith("refused")

    def later(merchant, tag):
        batch = commerce_pb2.EventBatch(merchant_id=merchant)
        event(batch, f"{tag}1", "product_view", "alice", "s-new", product_id="p1")
        event(batch, f"{tag}2", "product_view", "bob", "s-new-bob", product_id="p1")
        return stub.IngestEvents(batch, timeout=10)

    ack = later("shop-a", "x")
    assert ack.accepted == 1 and [(r.event_id, r.field) for r in ack.rejects] == [("x1", "user_id")]
    assert "erased" in ack.rejects[0].reason and "alice" not in ack.rejects[0].reason
    assert later("shop-b", "x").accepted == 2  # shop-b's alice is another shopper
    assert server.terminate() == 0
    again = served(world_dir, "--config", str(settings))
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(again.url))
    assert [r.field for r in later("shop-a", "y").rejects] == ["user_id"]
    assert again.terminate() == 0
    data = tmp_path / "data"
    pseudonyms = Pseudonyms(store_key("", data))
    listed = (data / "erased.list").read_text().split()
    assert len(listed) == 1
    assert listed[0] not in (scoped("shop-a", "alice"), pseudonyms.of(scoped("shop-a", "alice"))[2:])


def test_ingestion_goes_on_while_a_running_server_erases(tmp_path, served):
    """The Admin Forget rebuilds while the server takes events: batches sent meanwhile are
    accepted (refused UNAVAILABLE only in the last stretch), every one of them is in the rebuilt
    store, and the shopper's own events sent meanwhile are erased with the rest."""
    import threading

    from hanzo.v1 import admin_pb2, admin_pb2_grpc

    server, _ = one_product_server(tmp_path, served)
    channel = grpc.insecure_channel(server.url)
    stub, admin = commerce_pb2_grpc.CommerceStub(channel), admin_pb2_grpc.AdminStub(channel)
    for start in range(0, 60_000, 5_000):
        batch = commerce_pb2.EventBatch(merchant_id="shop-a")
        for i in range(start, start + 5_000):
            event(batch, f"e{i}", "product_view", "alice" if i % 10 == 0 else f"u{i % 700}", "s", product_id="p1")
        assert stub.IngestEvents(batch, timeout=60).accepted == 5_000
    answer = {}
    forgetting = threading.Thread(target=lambda: answer.setdefault("receipt", admin.Forget(
        admin_pb2.ForgetRequest(merchant_id="shop-a", user_id="alice"), timeout=120)))
    forgetting.start()
    accepted, refused, n = [], 0, 0
    while forgetting.is_alive():
        batch = commerce_pb2.EventBatch(merchant_id="shop-a")
        event(batch, f"m{n}", "product_view", "carol", "s-carol", product_id="p1")
        event(batch, f"m{n}-alice", "product_view", "alice", "s-alice-new", product_id="p1")
        try:
            assert stub.IngestEvents(batch, timeout=10).accepted == 2
            accepted.append(n)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            refused += 1
        n += 1
        time.sleep(0.005)
    forgetting.join()
    assert len(accepted) > refused and accepted  # most batches got in while it ran
    assert server.terminate() == 0
    records = load_log_records(tmp_path / "data")
    carol = {r["event_id"] for r in records if r.get("user_id") == "shop-a|carol"}
    assert carol == {f"shop-a|m{i}" for i in accepted}
    # hers sent meanwhile are erased up to the take-up; any taken after it (before the answer
    # reached this client) are a fresh history: the kept ones are the last ones sent
    kept = sorted(int(r["event_id"][len("shop-a|m"):-len("-alice")]) for r in records
                  if r.get("user_id") == "shop-a|alice")
    assert kept == accepted[len(accepted) - len(kept):] and len(kept) <= 2
    assert answer["receipt"].events_removed == 6_000 + len(accepted) - len(kept)


def test_a_rebuild_killed_with_its_server_leaves_nothing_after_the_next_start(tmp_path):
    """What a SIGKILLed server's rebuild leaves beside the store (its child dies with it): the
    directory it was building and that directory's lock file; recover_rebase, run at each start,
    removes both and keeps the store."""
    from hanzo.server.features import lock
    from hanzo.server.features.rebase import recover_rebase, staging_dir

    data = tmp_path / "data"
    (data / "log").mkdir(parents=True)
    (data / "log" / "keep").write_text("the store")
    staging = staging_dir(data)
    (staging / "log").mkdir(parents=True)
    lock.lock_file(staging).write_text("4242")
    recover_rebase(data)
    assert not staging.exists() and not lock.lock_file(staging).exists()
    assert (data / "log" / "keep").read_text() == "the store"
