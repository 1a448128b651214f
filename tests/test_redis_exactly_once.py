"""Redis mode across a crash of Hanzo between marking a batch's ids seen (Redis) and logging
the batch: the ids are unmarked at the restart, so the client's resend is taken, not called a
duplicate and lost; a batch logged but not yet applied is applied once by the replay, and its
resend is a duplicate."""
from __future__ import annotations

import time

import pytest

from hanzo.server.features.dedup import id_hashes
from hanzo.server.features.service import FeatureService, FeatureStoreConfig

NOW = int(time.time() * 1000)


def events(start: int, n: int) -> list[dict]:
    return [{"event_id": f"e{i}", "event_type": "product_view", "timestamp": NOW - 3_600_000 + i,
             "user_id": f"u{i % 3}", "session_id": f"s{i % 5}", "payload": {"product_id": f"p{i % 7}"},
             "context": {}} for i in range(start, start + n)]


@pytest.fixture
def open_store(tmp_path, redis_server, redis_client):
    opened = []

    def make() -> FeatureService:
        svc = FeatureService(FeatureStoreConfig(data_dir=tmp_path / "data", backend="redis", redis_url=redis_server,
                                                replica="r1"))
        svc.open()
        opened.append(svc)
        return svc

    yield make
    for svc in opened:
        svc._writer.shutdown(wait=True)


def crash(svc: FeatureService) -> None:
    """What SIGKILL leaves: the log as written, nothing more done."""
    svc._writer.shutdown(wait=True)
    svc.log.close()


def views(svc: FeatureService, product: str) -> float:
    values, _, _ = svc.store.gather("product", [product], ["product_views_24h"])
    return float(values[0, 0])


def test_ids_marked_seen_but_never_logged_are_unmarked_at_the_restart(open_store, redis_client):
    svc = open_store()
    svc.ingest_blocking(events(0, 10))
    records, hashes, _, duplicates = svc.admit(events(10, 10))  # marked seen in Redis...
    assert len(records) == 10 and duplicates == 0
    assert redis_client.scard("hz:pending:r1") == 10
    crash(svc)  # ...and the process dies before the log append
    again = open_store()
    assert redis_client.scard("hz:pending:r1") == 0
    result = again.ingest_blocking(events(10, 10))  # the client resends: taken, not a duplicate
    assert result.accepted == 10 and result.duplicates == 0
    assert again.ingest_blocking(events(0, 20)).duplicates == 20


def test_a_batch_logged_but_not_applied_is_applied_once_by_the_replay(open_store, redis_client):
    svc = open_store()
    svc.ingest_blocking(events(0, 7))
    before = views(svc, "p0")
    records, hashes, _, _ = svc.admit(events(7, 7))
    svc.log.append(records)  # in the log; the crash comes before the ids leave the pending set
    crash(svc)
    again = open_store()
    assert redis_client.scard("hz:pending:r1") == 0
    assert again.ingest_blocking(events(7, 7)).duplicates == 7  # logged: a resend is a duplicate
    assert views(again, "p0") == before + 1  # e7 counted once (p0 is every seventh product)
    assert redis_client.exists(*(f"hz:id:{h}" for h in id_hashes([f"e{i}" for i in range(14)]).tolist())) == 14
