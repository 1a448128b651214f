"""`hanzo forget` on a Redis store with two replicas, each with its own log, on a real
redis-server: the shopper's events leave both logs (their session's anonymous event served by
the other replica too), and no key or value in Redis holds their id, session, order or
pseudonyms; a restarted replica answers defaults for them and the same as before for everyone
else; the event ids that stay are still duplicates, the shopper's are free. A Redis whose
erasure stopped midway refuses a replica's start until the same command is run again."""
import json
import subprocess
import sys

import grpc
import numpy as np
import pytest
from test_erasure import event, one_product_server, shop_batch
from test_feature_server import _feature_names
from test_tenancy import read

from hanzo.server.features.offline import load_log_records
from hanzo.server.features.pseudonyms import Pseudonyms, store_key
from hanzo.server.features.redis_durability import MARK, RebuildUnfinished
from hanzo.server.features.service import FeatureService, FeatureStoreConfig
from hanzo.server.features.tenancy import scoped
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow


def redis_values(client) -> list[bytes]:
    """Every key and every value Redis holds, by type, as bytes."""
    out = []
    for key in client.scan_iter(count=1000):
        out.append(key)
        kind = client.type(key).decode()
        if kind == "string":
            out.append(client.get(key))
        elif kind == "hash":
            out.extend(b for pair in client.hgetall(key).items() for b in pair)
        elif kind == "set":
            out.extend(client.smembers(key))
        elif kind == "zset":
            out.extend(client.zrange(key, 0, -1))
        elif kind == "list":
            out.extend(client.lrange(key, 0, -1))
        elif kind == "stream":
            out.extend(b for _, fields in client.xrange(key) for pair in fields.items() for b in pair)
        else:
            raise AssertionError(f"{key}: a {kind} this test cannot read")
    return out


def forget(redis_url, *data_dirs):
    dirs = [arg for d in data_dirs for arg in ("--data-dir", str(d))]
    return subprocess.run([sys.executable, "-m", "hanzo.server.commands", "forget", "--redis-url", redis_url, *dirs,
                           "--merchant", "shop-a", "--user", "alice"], capture_output=True, text=True, timeout=180)


def test_forget_in_redis_mode_leaves_nothing_of_the_shopper_in_redis_or_any_log(tmp_path, served, redis_server,
                                                                                 redis_client):
    redis_args = ("--feature-backend", "redis", "--redis-url", redis_server)
    one, world_dir = one_product_server(tmp_path, served)
    one.terminate()  # only for the world: the replicas start on Redis
    first = served(world_dir, *redis_args)
    second = served(world_dir, "--data-dir", str(tmp_path / "data2"), *redis_args)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(first.url))
    other = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(second.url))
    assert stub.IngestEvents(shop_batch("shop-a"), timeout=10).accepted == 8
    assert other.IngestEvents(shop_batch("shop-b"), timeout=10).accepted == 8
    later = commerce_pb2.EventBatch(merchant_id="shop-a")  # alice again, through the other replica
    event(later, "a7", "product_view", "alice", "s-alice-2", product_id="p1")
    event(later, "a8", "page_view", None, "s-alice")  # anonymous, in her first session
    assert other.IngestEvents(later, timeout=10).accepted == 2
    before = {(m, u): read(stub, m, "user", [u])[1] for m in ("shop-a", "shop-b") for u in ("alice", "bob")}
    assert first.terminate() == 0 and second.terminate() == 0
    key = store_key("", tmp_path / "data", redis_client)

    partial = forget(redis_server, tmp_path / "data")  # a replica left out would bring her back
    assert partial.returncode != 0 and "replicas not given" in partial.stderr, partial.stderr
    assert str((tmp_path / "data2").resolve()) in partial.stderr and not redis_client.exists(MARK)
    done = forget(redis_server, tmp_path / "data", tmp_path / "data2")
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["events_removed_by_type"] == {"chargeback": 2, "order": 2, "page_view": 2, "product_view": 2}
    assert receipt["events_kept"] == 10 and receipt["sessions"] == 2 and receipt["orders"] == 2

    pseudonyms = Pseudonyms(key)
    gone = [scoped("shop-a", "alice"), scoped("shop-a", "s-alice"), scoped("shop-a", "o-alice"),
            pseudonyms.of(scoped("shop-a", "alice@example.org")), pseudonyms.of(scoped("shop-a", "198.51.100.7"))]
    held = redis_values(redis_client)
    assert held and not [(g, v) for v in held for g in gone if g.encode() in v]
    assert not redis_client.exists(MARK)
    for data in (tmp_path / "data", tmp_path / "data2"):
        for path in data.rglob("*"):
            if path.is_file():
                assert not [g for g in gone if g.encode() in path.read_bytes()], path
        assert "alice" not in (data / "audit.jsonl").read_text()
    assert len(load_log_records(tmp_path / "data")) + len(load_log_records(tmp_path / "data2")) == 10

    again = served(world_dir, *redis_args)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(again.url))
    nobody = read(stub, "shop-a", "user", ["never-seen"])[1:3]
    np.testing.assert_array_equal(read(stub, "shop-a", "user", ["alice"])[2], nobody[1])
    columns = list(stub.GetFeatures(commerce_pb2.FeaturesRequest(entity="user", entity_ids=["x"]), timeout=10).columns)
    age = columns.index("user_age")  # the store's clock is now the newest event kept, not alice's
    for merchant, user in (("shop-a", "bob"), ("shop-b", "alice"), ("shop-b", "bob")):
        values = read(stub, merchant, "user", [user])[1]
        np.testing.assert_array_equal(np.delete(values, age, 1), np.delete(before[merchant, user], age, 1))
    card = read(stub, "shop-a", "card", ["4000000000000002"])[1]
    assert card[0, _feature_names("card").index("card_distinct_users_30d")] == 1  # bob's order alone
    resend = shop_batch("shop-a")
    ack = stub.IngestEvents(resend, timeout=10)
    assert (ack.accepted, ack.duplicates) == (6, 2)  # bob's two are still seen; alice's six start afresh
    assert again.terminate() == 0


def test_a_redis_erasure_stopped_midway_refuses_a_start_until_it_is_run_again(tmp_path, served, redis_server,
                                                                             redis_client):
    redis_args = ("--feature-backend", "redis", "--redis-url", redis_server)
    one, world_dir = one_product_server(tmp_path, served)
    one.terminate()
    replica = served(world_dir, *redis_args)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(replica.url))
    assert stub.IngestEvents(shop_batch("shop-a"), timeout=10).accepted == 8
    assert replica.terminate() == 0
    done = forget(redis_server, tmp_path / "data")
    assert done.returncode == 0, done.stderr
    redis_client.set(MARK, "{}")  # as a crash between the first step and the last leaves it
    config = FeatureStoreConfig(data_dir=tmp_path / "data", backend="redis", redis_url=redis_server)
    with pytest.raises(RebuildUnfinished, match="run the same `hanzo forget` again"):
        FeatureService(config).open()
    done = forget(redis_server, tmp_path / "data")  # nothing more to remove from the log; Redis is rebuilt
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["events_removed"] == 0 and not redis_client.exists(MARK)
    again = served(world_dir, *redis_args)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(again.url))
    bob = read(stub, "shop-a", "user", ["bob"])
    nobody = read(stub, "shop-a", "user", ["never-seen"])
    assert bob[2].sum() < nobody[2].sum()  # bob is known again
    assert again.terminate() == 0


def test_with_refuse_a_redis_replica_refuses_the_shoppers_later_events(tmp_path, served, redis_server, redis_client):
    settings = tmp_path / "hanzo.toml"
    settings.write_text(f'[features]\nbackend = "redis"\nredis_url = "{redis_server}"\n'
                        f'erasure_later_events = "refuse"\n')
    one, world_dir = one_product_server(tmp_path, served)
    one.terminate()
    replica = served(world_dir, "--config", str(settings))
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(replica.url))
    assert stub.IngestEvents(shop_batch("shop-a"), timeout=10).accepted == 8
    assert replica.terminate() == 0
    done = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "forget", "--config", str(settings),
                           "--data-dir", str(tmp_path / "data"), "--merchant", "shop-a", "--user", "alice"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert redis_client.scard("hanzo:erased") == 1  # beside the store's keys, which the erasure emptied
    again = served(world_dir, "--config", str(settings))
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(again.url))
    batch = commerce_pb2.EventBatch(merchant_id="shop-a")
    event(batch, "n1", "product_view", "alice", "s-new", product_id="p1")
    event(batch, "n2", "product_view", "bob", "s-new", product_id="p1")
    ack = stub.IngestEvents(batch, timeout=10)
    assert ack.accepted == 1 and [(r.event_id, r.field) for r in ack.rejects] == [("n1", "user_id")]
    assert again.terminate() == 0
