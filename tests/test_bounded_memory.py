"""Memory that traffic cannot grow without bound: the feature store's plan cache, the served
log's pending buffer (and its failed flushes), and the users that only reads created. Real
FeatureStore / FeatureService on tmp_path, real ServedLog."""
import asyncio
import gc
import logging
import time
import weakref
from itertools import combinations

import numpy as np
import pytest

from hanzo.server.app.metrics import ServerCollector
from hanzo.server.features.expiry import READ_TTL_MS
from hanzo.server.features.service import FeatureService, FeatureStoreConfig
from hanzo.server.features.store import FeatureStore
from hanzo.server.surfaces.served_log import STATS, ServedLog

DAY = 86_400_000
NOW = int(time.time() * 1000)
START = NOW - 75 * DAY  # room to move the store's clock past the read-created users' expiry, twice


def view(i: int, user: str, ts: int = START) -> dict:
    return {"event_id": f"view-{i}-{user}", "event_type": "product_view", "timestamp": ts, "user_id": user,
            "session_id": f"s-{user}", "payload": {"product_id": f"p{i % 5}", "category": "shoes", "price": 10.0},
            "context": {}}


def shown(request: str, user: str, ts: int = START) -> dict:
    """What Recommend logs for a call (surfaces/recommend.py _shown_event)."""
    return {"event_id": f"shown-{request}", "event_type": "recommendation_shown", "timestamp": ts, "user_id": user,
            "session_id": f"user:{user}", "payload": {"product_ids": ["p1", "p2"], "request_id": request,
                                                       "model_version": "recommend:1", "placement": "home"},
            "context": {}}


def open_service(path) -> FeatureService:
    svc = FeatureService(FeatureStoreConfig(data_dir=path, fsync="never"))
    svc.open()
    return svc


def user_scalars(store: FeatureStore) -> list[str]:
    return [n for n in store.feature_names("user") if store.features[n].aggregation != "sequence"]


# ---------------------------------------------------------------- the plan cache

def test_plan_cache_is_bounded_and_permutations_share_one_plan():
    store = FeatureStore()
    store.apply([view(i, f"u{i % 4}", START + i) for i in range(40)])
    names = user_scalars(store)
    keys = ["u0", "u1", "u2", "u3", "never-seen"]
    lists = [list(c) for c in combinations(names, 3)]
    for chosen in lists:
        store.gather("user", keys, chosen)
    assert len(store._plans) <= 64 < len(lists)

    full, full_missing, layout = store.gather("user", keys, names)
    column = {name: (start, width) for name, start, width in layout}
    plans = len(store._plans)
    asked = list(reversed(names)) + [names[0]]  # another order, with a repeat
    values, missing, asked_layout = store.gather("user", keys, asked)
    assert len(store._plans) == plans  # the same canonical plan answered
    assert [name for name, _, _ in asked_layout] == asked
    for name, start, width in asked_layout:
        at, w = column[name]
        assert width == w
        np.testing.assert_array_equal(values[:, start:start + width], full[:, at:at + w])
        np.testing.assert_array_equal(missing[:, start:start + width], full_missing[:, at:at + w])
    assert values.shape[1] == sum(w for _, _, w in asked_layout)


def test_a_grown_table_leaves_no_old_arrays_in_the_cache():
    store = FeatureStore()
    store.apply([view(i, f"u{i}", START + i) for i in range(10)])
    names = user_scalars(store)
    table = store.reads["user_views_24h"].table
    old = weakref.ref(table.values)
    for i in range(1, 6):
        store.gather("user", ["u1"], names[:i])  # plans over the current arrays
    # new users grow every user table: new arrays, and the cached plans are stale
    store.apply([view(i, f"new{i}", START + 100 + i) for i in range(500)])
    gc.collect()
    assert old() is None
    # and the answers read the new arrays, a rebuilt plan in any order included
    got, _, layout = store.gather("user", ["new7"], ["user_views_24h"])
    assert got[0, 0] == 1.0
    asked = ["user_views_24h"] + names[:3][::-1]
    got, _, layout = store.gather("user", ["new7", "u1"], asked)
    assert [name for name, _, _ in layout] == asked and got[:, 0].tolist() == [1.0, 1.0]
    # a store with no user yet answers an unknown one as missing
    values, missing, _ = FeatureStore().gather("user", ["nobody"], names)
    assert missing.all() and values.shape == (1, sum(store.features[n].width for n in names))


# ---------------------------------------------------------------- the served log

@pytest.fixture
def service(tmp_path):
    svc = open_service(tmp_path / "data")
    yield svc
    svc.close()


async def test_failed_flush_is_counted_logged_without_contents_and_the_log_goes_on(service, caplog, monkeypatch):
    real_ingest, calls = service.ingest, []

    async def flaky(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return await real_ingest(items)

    monkeypatch.setattr(service, "ingest", flaky)
    served = ServedLog(service, every_s=0.005)
    lost_before, failures_before = STATS.lost[("recommendation_shown", "flush_failed")], STATS.flush_failures
    caplog.set_level(logging.WARNING)
    for i in range(3):
        served.record(shown(f"a{i}", "secret-shopper-42"))
    await asyncio.wait_for(served.flush(), 5)
    assert STATS.lost[("recommendation_shown", "flush_failed")] - lost_before == 3
    assert STATS.flush_failures - failures_before == 1
    for i in range(2):
        served.record(shown(f"b{i}", "secret-shopper-42"))
    await asyncio.wait_for(served.flush(), 5)
    assert service.applied_seq == 2  # the next batch went in
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
    lost = [r for r in caplog.records if r.getMessage() == "served events lost"]
    assert len(lost) == 1 and lost[0].lost == {"flush_failed": 3} and "OSError" in lost[0].error
    assert "secret-shopper-42" not in caplog.text and "secret-shopper-42" not in str(lost[0].__dict__)


async def test_full_batches_never_wait_on_each_other(service, monkeypatch):
    real_ingest = service.ingest

    async def slow(items):
        await asyncio.sleep(0.01)
        return await real_ingest(items)

    monkeypatch.setattr(service, "ingest", slow)
    served = ServedLog(service)
    for i in range(2_000):  # four full batches before the flusher first runs
        served.record(shown(f"r{i}", f"u{i % 50}"))
    await asyncio.wait_for(served.flush(), 10)
    assert service.applied_seq == 2_000 and served.pending == 0


async def test_the_pending_buffer_is_bounded_and_drops_are_counted(service, caplog, monkeypatch):
    gate, real_ingest = asyncio.Event(), service.ingest

    async def held(items):
        await gate.wait()
        return await real_ingest(items)

    monkeypatch.setattr(service, "ingest", held)
    served = ServedLog(service, capacity=1_000)
    before = STATS.lost[("recommendation_shown", "full")]
    caplog.set_level(logging.WARNING)
    for i in range(5_000):
        served.record(shown(f"q{i}", f"u{i}"))
    assert served.pending == 1_000
    assert STATS.lost[("recommendation_shown", "full")] - before == 4_000
    for i in range(5_000, 6_000):  # the store is stuck: the flusher holds a batch, the buffer refills
        if i % 100 == 0:
            await asyncio.sleep(0)
        served.record(shown(f"q{i}", f"u{i}"))
    assert served.pending <= 1_000
    lost = [r for r in caplog.records if r.getMessage() == "served events lost"]
    assert len(lost) == 1  # once per interval, never per event
    gate.set()
    await asyncio.wait_for(served.flush(), 10)
    assert served.pending == 0 and service.applied_seq == 2_000
    families = {m.name: m for m in ServerCollector._served_log()}
    samples = {tuple(s.labels.values()): s.value for s in families["hanzo_served_events_lost"].samples}
    assert samples[("recommendation_shown", "full")] == STATS.lost[("recommendation_shown", "full")] >= 4_000


# ---------------------------------------------------------------- users only reads created

def read_created(store: FeatureStore, users: list[str]) -> np.ndarray:
    return store.rows("user", users, store.watermark) >= 0


async def test_users_only_reads_created_expire(tmp_path):
    svc = open_service(tmp_path / "data")
    shoppers = [f"shopper{i}" for i in range(5)]
    svc.ingest_blocking([view(i, user, START + i) for i, user in enumerate(shoppers)])
    before = len(svc.store.entities["user"])
    served = ServedLog(svc)
    readers = [f"reader{i}" for i in range(10_000)]
    for i, user in enumerate(readers):  # 10,000 Recommend calls, each for a new user id
        served.record(shown(f"req{i}", user, START + 10 + i))
    await asyncio.wait_for(served.flush(), 30)
    assert len(svc.store.entities["user"]) == before + 10_000
    assert read_created(svc.store, readers[:3]).all()  # known while within the expiry

    # the store's clock moves past the expiry (a shopper's event, days later)
    later = START + 10_000 + READ_TTL_MS["user"] + DAY
    svc.ingest_blocking([view(99, "shopper0", later)])
    assert not read_created(svc.store, readers[:100]).any()  # answered as unknown at once
    assert read_created(svc.store, shoppers).all()  # a shopper is kept, however long away
    svc.snapshot()  # the store's eviction runs with every snapshot
    assert len(svc.store.entities["user"]) == before
    viewed = svc.store.sequences("user", shoppers[1:2], "user_recent_viewed")[0]
    assert viewed == ["p1"]

    # the mark "had a real event" survives a restart: a new read-created user still expires
    for i in range(10):
        served.record(shown(f"after{i}", f"reader-late{i}", later + 1))
    await served.flush()
    svc.close()
    svc = open_service(tmp_path / "data")
    assert len(svc.store.entities["user"]) == before + 10
    svc.ingest_blocking([view(100, "shopper1", later + READ_TTL_MS["user"] + DAY)])
    svc.snapshot()
    assert len(svc.store.entities["user"]) == before
    assert read_created(svc.store, shoppers).all()
    svc.close()
