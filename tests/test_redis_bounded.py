"""Issue #16 with `[features] backend = "redis"`: a replica's in-process state does not grow with
the shoppers it has seen (the tables, presence and clocks live in Redis), while every read
answers as the embedded store fed the same batches does. Against a real redis-server."""
import asyncio
import time

import msgpack
import numpy as np
import pytest

from hanzo.server.features.redis_store import RedisFeatureStore
from hanzo.server.features.service import FeatureService, FeatureStoreConfig
from hanzo.server.features.store import ENTITY_KEY, FeatureBlock, FeatureStore

DAY = 86_400_000
START = int(time.time() * 1000) - 5 * DAY  # inside the dedup horizon, with room for a later batch
BATCHES, USERS = 20, 1_000
BOUNDED = ("user", "session", "card", "device", "address")


def batch_events(b: int, users: int = USERS, start: int = START) -> list[dict]:
    """`users` user ids never seen before: a third only served a recommendation (read-created),
    the rest view and add to cart; every fifth also orders with a new card, device and address."""
    out = []
    for i in range(users):
        user, ts = f"u{b}-{i}", start + b * 60_000 + i
        if i % 3 == 0:
            out.append({"event_id": f"shown-{user}", "event_type": "recommendation_shown", "timestamp": ts,
                        "user_id": user, "session_id": f"user:{user}",
                        "payload": {"product_ids": ["p1", "p2"], "request_id": user}, "context": {}})
            continue
        for kind in ("product_view", "add_to_cart"):
            out.append({"event_id": f"{kind}-{user}", "event_type": kind, "timestamp": ts, "user_id": user,
                        "session_id": f"s-{user}", "context": {},
                        "payload": {"product_id": f"p{i % 40}", "category": f"c{i % 4}", "price": 5.0 + i % 7}})
        if i % 5 == 0:
            out.append({"event_id": f"order-{user}", "event_type": "order", "timestamp": ts + 1, "user_id": user,
                        "session_id": f"s-{user}", "context": {},
                        "payload": {"order_id": f"o-{user}", "amount": 10.0 + i % 13, "card_id": f"card-{b}-{i}",
                                    "device_id": f"dev-{b}-{i}", "shipping_address_id": f"addr-{b}-{i}"}})
    return out


def sample(events: list[dict], entity: str, n: int = 40, seed: int = 0) -> list[str]:
    keys = sorted({k for k in map(ENTITY_KEY[entity], events) if k})
    picked = np.random.default_rng(seed).choice(len(keys), size=min(n, len(keys)), replace=False)
    return [keys[i] for i in picked] + ["never-seen"]


def assert_same_reads(store, embedded: FeatureStore, events: list[dict]) -> int:
    """Every feature of sampled keys of every entity, as both stores answer them."""
    compared = 0
    for entity in BOUNDED + ("product",):
        keys, names = sample(events, entity), embedded.feature_names(entity)
        got, want = store.read(entity, keys, names), embedded.read(entity, keys, names)
        assert got.layout == want.layout, entity
        np.testing.assert_array_equal(got.values, want.values, err_msg=entity)
        np.testing.assert_array_equal(got.missing, want.missing, err_msg=entity)
        assert got.sequences.keys() == want.sequences.keys()
        for name, (flat, counts) in want.sequences.items():
            assert got.sequences[name][0] == flat, name
            np.testing.assert_array_equal(got.sequences[name][1], counts, err_msg=name)
        compared += int((~want.missing.astype(bool)).sum())
    return compared


def assert_nothing_by_row(store: RedisFeatureStore) -> None:
    """The per-row state the embedded store keeps is never made in Redis mode."""
    assert all(seen.shape[0] == 0 for seen in store.last_seen.values())
    assert all(real.shape[0] == 0 for real in store.real.values())
    assert all(table.capacity == 0 for table in store.tables)


def redis_service(data, redis_server: str) -> FeatureService:
    svc = FeatureService(FeatureStoreConfig(data_dir=data, fsync="never", backend="redis", redis_url=redis_server))
    svc.open()
    return svc


def test_a_replica_holds_no_state_per_shopper_and_reads_as_the_embedded_store(tmp_path, redis_client,
                                                                                 redis_server):
    svc = redis_service(tmp_path / "data", redis_server)
    limit = 1_500
    svc.store.index_limit = limit
    embedded = FeatureStore()
    events, held = [], []
    for b in range(BATCHES):
        batch = batch_events(b)
        assert svc.ingest_blocking(batch).accepted == len(batch)
        embedded.apply(batch)
        events.extend(batch)
        held.append({entity: len(svc.store.entities[entity]) for entity in BOUNDED})
        assert_nothing_by_row(svc.store)
    users = len({r["user_id"] for r in events})
    assert users == BATCHES * USERS and len(embedded.entities["user"]) == users
    for entity in BOUNDED:  # at most the limit plus one batch's keys, however many were seen
        assert max(h[entity] for h in held) <= limit + USERS, (entity, held)
    assert held[-1]["user"] < users // 5
    assert assert_same_reads(svc.store, embedded, events) > 1_000

    # The snapshot lists no more keys than the indexes hold, and a restart reads the same.
    path = svc.snapshot()
    state = msgpack.unpackb((path / "state.msgpack").read_bytes(), raw=False, strict_map_key=False)
    assert max(len(state["entities"][entity]) for entity in BOUNDED) <= limit + USERS
    svc.close()
    svc = redis_service(tmp_path / "data", redis_server)
    assert all(len(svc.store.entities[entity]) <= limit + USERS for entity in BOUNDED)
    assert_same_reads(svc.store, embedded, events)

    # Two days on: sessions are past their TTL. Redis's eviction empties its presence set
    # (nothing in process to reclaim), and both stores answer them as unknown.
    later = batch_events(BATCHES, users=30, start=START + 2 * DAY)
    assert svc.ingest_blocking(later).accepted == len(later)
    embedded.apply(later)
    sessions = len(svc.store.entities["session"])
    dropped = svc.store.evict()
    assert dropped["session"] >= BATCHES * USERS and "user" not in dropped
    assert len(svc.store.entities["session"]) == sessions
    embedded.evict(min_share=0.0)
    assert_same_reads(svc.store, embedded, events + later)
    old = sample(events, "session")
    assert svc.store.read("session", old, ["session_event_count_24h"]).missing.all()
    svc.close()


def test_every_batch_numbers_its_own_keys(redis_client):
    """index_limit 0: the indexes start over before each batch, the answers are unchanged."""
    store, embedded = RedisFeatureStore(redis_client, index_limit=0), FeatureStore()
    events = []
    for b in range(4):
        batch = batch_events(b, users=300)
        store.apply(batch)
        embedded.apply(batch)
        events.extend(batch)
        assert len(store.entities["user"]) == 300  # this batch's users only
        assert_nothing_by_row(store)
    assert assert_same_reads(store, embedded, events) > 500


def test_a_batch_that_fails_before_its_flush_keeps_its_rows(redis_client):
    """Its buffered rows go out with the next flush, so its keys' rows must not be reused."""
    store, embedded = RedisFeatureStore(redis_client, index_limit=0), FeatureStore()
    first, second = batch_events(0, users=200), batch_events(1, users=200)
    flush = store._flush

    def failing() -> None:
        store._flush = flush
        raise ConnectionError("redis away")

    store._flush = failing
    with pytest.raises(ConnectionError):
        store.apply(first)
    store.apply(second)
    embedded.apply(first)
    embedded.apply(second)
    assert_same_reads(store, embedded, first + second)


def shown_event(user: str, ts: int, n: int = 0) -> dict:
    """What the served-decision log writes for a Recommend call: the only event a reader makes."""
    return {"event_id": f"shown-{user}-{n}", "event_type": "recommendation_shown", "timestamp": ts, "user_id": user,
            "session_id": f"user:{user}", "payload": {"product_ids": ["p1", "p2"], "request_id": f"{user}-{n}"},
            "context": {}}


def view_event(user: str, ts: int) -> dict:
    return {"event_id": f"view-{user}-{ts}", "event_type": "product_view", "timestamp": ts, "user_id": user,
            "session_id": f"s-{user}", "context": {}, "payload": {"product_id": "p3", "category": "c1", "price": 7.0}}


def user_keys(client, store: RedisFeatureStore) -> list[str]:
    """Every key of the user tables in Redis (SCAN), by entity key."""
    out = []
    for table in store.tables:
        if table.entity == "user":
            prefix = store._key(table, "")
            out += [k.decode()[len(prefix):] for k in client.scan_iter(match=prefix + "*", count=1_000)]
    return out


def test_users_only_reads_created_are_forgotten_in_redis_as_in_the_embedded_store(tmp_path, redis_client,
                                                                                    redis_server):
    """expiry.READ_TTL_MS in Redis: 2,000 users served recommendations and nothing else read as
    unknown once the store's clock is past it, as in the embedded store, and evict() deletes their
    members and keys; shoppers, whether their real event came first or after being served, stay
    (their untimed keys persisted), and reads agree before and after."""
    from hanzo.server.features.expiry import READ_TTL_MS

    svc = redis_service(tmp_path / "data", redis_server)
    embedded = FeatureStore()
    start = int(time.time() * 1000) - READ_TTL_MS["user"] - 3 * DAY
    readers = [f"reader-{i}" for i in range(2_000)]
    shoppers = [f"shopper-{i}" for i in range(10)]  # a real event first, then only served
    converts = [f"convert-{i}" for i in range(10)]  # served first, a real event a batch later
    batches = [[shown_event(u, start + i) for i, u in enumerate(readers[first:first + 500])]
               for first in range(0, len(readers), 500)]
    batches.insert(1, [view_event(u, start + 10 + i) for i, u in enumerate(shoppers)]
                   + [shown_event(u, start + 20 + i) for i, u in enumerate(converts)])
    batches.append([shown_event(u, start + DAY + i, 1) for i, u in enumerate(shoppers)]
                   + [view_event(u, start + DAY + i) for i, u in enumerate(converts)])
    batches.append([view_event("later", start + READ_TTL_MS["user"] + 2 * DAY)])  # the clock moves on
    for batch in batches:
        assert svc.ingest_blocking(batch).accepted == len(batch)
        embedded.apply(batch)
    events = [e for batch in batches for e in batch]
    kept = shoppers + converts + ["later"]
    # the untimed tables these events feed (a user's purchase life has none of them)
    spans = [t for t in svc.store.tables if t.entity == "user" and svc.store._ttl(t) is None
             and redis_client.exists(svc.store._key(t, kept[0]))]
    assert spans and all(redis_client.pttl(svc.store._key(t, u)) == -1 for t in spans for u in kept)
    held = [svc.store._key(t, u) for t in spans for u in readers[::97] if redis_client.exists(svc.store._key(t, u))]
    assert held and all(0 < redis_client.pttl(key) for key in held)

    names = embedded.feature_names("user")
    keys = readers[::37] + kept + ["never-seen"]
    loop = asyncio.new_event_loop()  # one loop: the async client's connections belong to it

    def same_reads() -> FeatureBlock:
        got, want = svc.store.read("user", keys, names), embedded.read("user", keys, names)
        async_got = loop.run_until_complete(svc.read("user", keys, names))
        for block in (got, async_got):
            np.testing.assert_array_equal(block.values, want.values)
            np.testing.assert_array_equal(block.missing, want.missing)
            for name, (flat, counts) in want.sequences.items():
                assert block.sequences[name][0] == flat, name
                np.testing.assert_array_equal(block.sequences[name][1], counts, err_msg=name)
        return want

    def readers_unknown(want: FeatureBlock) -> bool:
        age = next(col for name, col, _ in want.layout if name == "user_age")
        return want.missing[: len(readers[::37])].all() and not want.missing[len(readers[::37]):-1, age].any()

    assert readers_unknown(same_reads())
    assert assert_same_reads(svc.store, embedded, events) > 0
    assert redis_client.zcard("hz:e:user") == len(readers) + len(kept)

    dropped = svc.store.evict()
    assert dropped["user"] == len(readers) == embedded.evict(min_share=0.0)["user"]
    assert redis_client.zcard("hz:r:user") == 0
    assert sorted(m.decode() for m in redis_client.zrange("hz:e:user", 0, -1)) == sorted(kept)
    assert not [u for u in user_keys(redis_client, svc.store) if u.startswith("reader-")]
    assert set(user_keys(redis_client, svc.store)) == set(kept)
    assert svc.store.evict().get("user") is None  # nothing left to forget
    assert readers_unknown(same_reads())
    assert_same_reads(svc.store, embedded, events)

    # A forgotten reader served again starts over, as a new row of the embedded store does.
    again = [shown_event(u, start + READ_TTL_MS["user"] + 2 * DAY + 1, 2) for u in readers[:5]]
    assert svc.ingest_blocking(again).accepted == len(again)
    embedded.apply(again)
    want = same_reads()
    age = next(col for name, col, _ in want.layout if name == "user_age")
    assert want.missing[0, age] == 0 and want.values[0, age] == 0.0  # reader-0, first seen just now
    svc.close()
    loop.close()
