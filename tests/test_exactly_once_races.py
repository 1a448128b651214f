"""The races around one batch's way into the log, in both stores: a resend while the first
send is still being written is refused (never called a duplicate of a batch that may yet
fail), a call cancelled mid-append still has its batch applied once, and in Redis mode a
script call whose answer was lost is sent again and counted once."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hanzo.server.features.dedup import id_hashes
from hanzo.server.features.service import FeatureService, FeatureStoreConfig
from hanzo.server.models.errors import Unavailable

NOW = int(time.time() * 1000)


def events(start: int, n: int) -> list[dict]:
    return [{"event_id": f"e{i}", "event_type": "product_view", "timestamp": NOW - 3_600_000 + i,
             "user_id": f"u{i % 3}", "session_id": f"s{i % 5}", "payload": {"product_id": f"p{i % 7}"},
             "context": {}} for i in range(start, start + n)]


@pytest.fixture(params=["embedded", "redis"])
def make(request, tmp_path):
    opened = []

    def make(replica: str = "r1") -> FeatureService:
        options = {}
        if request.param == "redis":
            request.getfixturevalue("redis_client")
            options = {"backend": "redis", "redis_url": request.getfixturevalue("redis_server"), "replica": replica}
        svc = FeatureService(FeatureStoreConfig(data_dir=tmp_path / f"data-{replica}", **options))
        svc.open()
        opened.append(svc)
        return svc

    yield make
    for svc in opened:
        svc.close()


def views(svc: FeatureService, product: str) -> float:
    values, _, _ = svc.store.gather("product", [product], ["product_views_24h"])
    return float(values[0, 0])


def slow_appends(svc: FeatureService, release: threading.Event) -> None:
    append = svc.log.append

    def held(records):
        release.wait(10)
        return append(records)

    svc.log.append = held


async def test_a_resend_while_the_first_send_is_being_written_waits_for_it_then_is_a_duplicate(make):
    svc = make()
    release = threading.Event()
    slow_appends(svc, release)
    first = asyncio.ensure_future(svc.ingest(events(0, 10)))
    await asyncio.sleep(0.05)
    resend = asyncio.ensure_future(svc.ingest(events(5, 10)))  # e5..e9 are the first send's
    await asyncio.sleep(0.05)
    assert not resend.done()  # neither new nor a duplicate while the first may still fail
    release.set()
    assert (await first).accepted == 10
    again = await resend
    assert (again.accepted, again.duplicates) == (5, 5)
    assert views(svc, "p0") == 3  # e0, e7 and e14, once each
    assert not svc._in_flight


def test_a_bulk_load_meeting_a_batch_in_flight_is_told_to_retry(tmp_path):
    svc = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "d"))
    svc.open()
    records, hashes, _, _ = svc.admit(events(0, 5))
    svc._in_flight.update(dict.fromkeys(hashes.tolist(), None))  # as an ingest() under way holds them
    with pytest.raises(Unavailable, match="'e2'.*still being written.*retry"):
        svc.ingest_blocking(events(2, 5))
    svc.close()


async def test_a_failed_first_send_leaves_its_ids_free_for_the_resend(make):
    svc = make()
    append = svc.log.append

    def full(records):
        raise OSError(28, "No space left on device")

    svc.log.append = full
    with pytest.raises(OSError):
        await svc.ingest(events(0, 10))
    svc.log.append = append
    assert (await svc.ingest(events(0, 10))).accepted == 10  # (in Redis mode after the unmarking's round trip)


async def test_a_call_cancelled_during_its_append_still_has_its_batch_applied_once(make):
    svc = make()
    release = threading.Event()
    slow_appends(svc, release)
    call = asyncio.ensure_future(svc.ingest(events(0, 14)))
    await asyncio.sleep(0.05)
    call.cancel()  # the client went away: the append is already under way
    with pytest.raises(asyncio.CancelledError):
        await call
    release.set()
    for _ in range(100):
        if not svc._in_flight:
            break
        await asyncio.sleep(0.01)
    assert views(svc, "p0") == 2  # e0 and e7, applied though the caller had gone
    resend = await svc.ingest(events(0, 14))
    assert resend.duplicates == 14 and views(svc, "p0") == 2
    logged = [r["event_id"] for _, batch in svc.log.replay(0) for r in batch]
    assert sorted(logged) == sorted(e["event_id"] for e in events(0, 14))


def test_another_replica_meets_a_pending_id_as_retry_then_as_a_duplicate(redis_server, redis_client, tmp_path):
    config = dict(backend="redis", redis_url=redis_server)
    one = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "one", replica="one", **config))
    two = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "two", replica="two", **config))
    one.open()
    two.open()
    records, hashes, _, _ = one.admit(events(0, 5))  # replica one has marked them and not logged yet
    with pytest.raises(Unavailable, match="another replica"):
        two.ingest_blocking(events(0, 5))
    one.commit(records, one.log.append(records), hashes=hashes)
    assert two.ingest_blocking(events(0, 5)).duplicates == 5
    assert redis_client.scard("hz:pending:one") == 0
    assert {redis_client.get(f"hz:id:{h}") for h in hashes.tolist()} == {b"1"}
    one.close()
    two.close()


def test_a_script_call_whose_answer_was_lost_is_sent_again_and_counted_once(redis_server, redis_client, tmp_path):
    import redis

    svc = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "d", backend="redis", redis_url=redis_server,
                                            replica="r1"))
    svc.open()
    svc.ingest_blocking(events(0, 7))
    script = svc.store.sends._script
    lost = []

    def answer_lost(*args, **kwargs):
        script(*args, **kwargs)  # it ran in Redis...
        if not lost:
            lost.append(True)
            raise redis.exceptions.ConnectionError("connection reset")  # ...and its answer never came
        return 1

    svc.store.sends._script = answer_lost
    with pytest.raises(Unavailable):
        svc.ingest_blocking(events(7, 7))
    svc.store.sends._script = script
    assert svc.ingest_blocking(events(14, 7)).accepted == 7  # sends the lost one first: skipped by position
    assert views(svc, "p0") == 3  # e0, e7, e14: each once
    assert svc.ingest_blocking(events(7, 7)).duplicates == 7
    svc.close()


async def test_ingestion_waits_for_redis_without_holding_the_event_loop(redis_server, redis_client, tmp_path):
    svc = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "d", backend="redis", redis_url=redis_server,
                                            replica="r1"))
    svc.open()
    await svc.ingest(events(0, 7))  # connections made
    lateness = []

    async def ticks():
        while True:
            due = time.monotonic() + 0.01
            await asyncio.sleep(0.01)
            lateness.append(time.monotonic() - due)

    ticker = asyncio.ensure_future(ticks())
    redis_client.execute_command("CLIENT", "PAUSE", "800", "ALL")  # Redis answers nobody for 0.8 s
    started = time.monotonic()
    result = await svc.ingest(events(7, 7))
    waited = time.monotonic() - started
    ticker.cancel()
    assert result.accepted == 7 and waited > 0.5  # the batch did wait for Redis...
    assert max(lateness) < 0.3  # ...while the loop went on serving (a blocking call would hold it 0.8 s)
    assert views(svc, "p0") == 2
    svc.close()


async def test_batches_are_applied_in_log_order_when_a_cancelled_one_finishes_first(make):
    svc = make()
    release = threading.Event()
    slow_appends(svc, release)
    applied = []
    commit = svc.commit
    svc.commit = lambda records, first, **kw: (applied.append(first), commit(records, first, **kw))[1]
    first = asyncio.ensure_future(svc.ingest(events(0, 7)))
    await asyncio.sleep(0.02)
    second = asyncio.ensure_future(svc.ingest(events(7, 7)))
    await asyncio.sleep(0.02)
    second.cancel()
    release.set()
    time.sleep(0.3)  # the loop held: both appends end before it runs a single callback
    assert (await first).accepted == 7
    with pytest.raises(asyncio.CancelledError):
        await second
    while svc._in_flight:
        await asyncio.sleep(0.01)
    assert applied == [0, 7]
    assert views(svc, "p0") == 2


def test_a_log_that_broke_takes_no_batch_and_leaves_no_snapshot(tmp_path):
    from hanzo.server.features.log import LogBroken

    svc = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "d"))
    svc.open()
    svc.ingest_blocking(events(0, 5))
    svc.log._broken = "a failed write could not be cut back"  # what _undo leaves when the disk refuses even that
    with pytest.raises(LogBroken):
        svc.ingest_blocking(events(0, 10))  # never "5 duplicates": the log may not hold them
    with pytest.raises(LogBroken):
        asyncio.run(svc.ingest(events(5, 5)))
    svc.close()
    assert not (tmp_path / "d" / "snapshots").exists()


def test_redis_counts_a_repeated_id_in_one_batch_once(redis_server, redis_client, tmp_path):
    svc = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "d", backend="redis", redis_url=redis_server,
                                            replica="r1"))
    svc.open()
    batch = events(0, 3) + events(0, 1)
    result = svc.ingest_blocking(batch)
    assert (result.accepted, result.duplicates) == (3, 1)
    assert svc.ingest_blocking(batch).duplicates == 4
    svc.close()


async def test_redis_unmarks_what_a_call_cancelled_during_its_dedup_had_marked(redis_server, redis_client, tmp_path):
    svc = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "d", backend="redis", redis_url=redis_server,
                                            replica="r1"))
    svc.open()
    await svc.ingest(events(0, 7))
    redis_client.execute_command("CLIENT", "PAUSE", "300", "ALL")
    call = asyncio.ensure_future(svc.ingest(events(7, 7)))
    await asyncio.sleep(0.1)
    call.cancel()  # the deadline passes while the dedup script waits on Redis
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0.4)  # Redis answers the script after the pause; the unmarking follows it
    marked = [f"hz:id:{h}" for h in id_hashes([f"e{i}" for i in range(7, 14)]).tolist()]
    for _ in range(100):
        if redis_client.exists(*marked) == 0:
            break
        await asyncio.sleep(0.02)
    assert redis_client.exists(*marked) == 0 and redis_client.scard("hz:pending:r1") == 0
    assert (await svc.ingest(events(7, 7))).accepted == 7  # the resend is taken, not told to retry
    svc.close()


def test_redis_batches_it_never_got_reach_it_after_a_restart_and_count_once(redis_server, redis_client, tmp_path):
    import redis

    config = FeatureStoreConfig(data_dir=tmp_path / "d", backend="redis", redis_url=redis_server, replica="r1",
                                snapshot_every_events=7)
    svc = FeatureService(config)
    svc.open()
    svc.ingest_blocking(events(0, 7))
    script = svc.store.sends._script

    def away(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Redis is away")

    svc.store.sends._script = away
    with pytest.raises(Unavailable):
        svc.ingest_blocking(events(7, 7))  # logged; Redis never got it
    snapshots_before = sorted(p.name for p in (tmp_path / "d" / "snapshots").iterdir())
    svc.close()  # Redis still away: no snapshot may claim the batch is in Redis
    assert sorted(p.name for p in (tmp_path / "d" / "snapshots").iterdir()) == snapshots_before
    svc.store.sends._script = script
    again = FeatureService(config)
    again.open()
    assert views(again, "p0") == 2  # e0 and e7, each once
    assert redis_client.scard("hz:pending:r1") == 0
    assert again.ingest_blocking(events(7, 7)).duplicates == 7
    again.close()


async def test_redis_a_resend_during_the_first_sends_dedup_round_trip_waits_for_it(redis_server, redis_client,
                                                                                  tmp_path):
    svc = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "d", backend="redis", redis_url=redis_server,
                                            replica="r1"))
    svc.open()
    await svc.ingest(events(0, 7))
    redis_client.execute_command("CLIENT", "PAUSE", "300", "ALL")
    first = asyncio.ensure_future(svc.ingest(events(7, 7)))  # its dedup script waits on Redis
    await asyncio.sleep(0.05)
    resend = await svc.ingest(events(7, 7))  # the same events (a served decision's own record, say)
    assert (await first).accepted == 7 and resend.duplicates == 7
    svc.close()


async def test_the_redis_resender_outlives_redis_refusing_writes(redis_server, redis_client, tmp_path):
    import redis

    svc = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "d", backend="redis", redis_url=redis_server,
                                            replica="r1"))
    svc.open()
    svc.store.sends.add(["\x90", 0, "", "", "", "", "", ""])  # something queued
    tries = []

    async def refusing():
        tries.append(1)
        if len(tries) < 3:
            raise (redis.exceptions.OutOfMemoryError if len(tries) == 1 else RuntimeError)("refused")
        svc.store.sends._queue.clear()

    svc.store.sends.send_async = refusing
    resender = asyncio.ensure_future(svc.resend_unsent(every_s=0.01, most_s=0.02))
    for _ in range(200):
        if not len(svc.store.sends):
            break
        await asyncio.sleep(0.01)
    assert not resender.done() and len(tries) == 3 and not len(svc.store.sends)
    resender.cancel()
    svc.close()
