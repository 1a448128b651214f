"""A Redis store written under other feature definitions is refused at a replica's start (never
answered from empty tables), and `hanzo rebuild-redis` makes its tables again from the logs."""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import opened_store

DAY_MS = 86_400_000


def _purchases(n: int) -> list[dict]:
    return [{"event_id": f"e{i}", "event_type": "purchase", "timestamp": 1_700_000_000_000 + i * DAY_MS,
             "user_id": f"u{i % 3}", "session_id": f"s{i}", "payload": {"product_id": "p1", "amount": 2.0},
             "context": {}} for i in range(n)]


def _read(svc) -> list:
    return svc.store.read("user", ["u0", "u1"], ["user_purchase_days", "user_lifetime_spend"]).values.tolist()


def test_another_layout_is_refused_and_rebuilt_from_the_log(tmp_path, redis_server, redis_client):
    from hanzo.server.features.redis_layout import LAYOUT_KEY, LayoutChanged

    data = tmp_path / "data"
    svc = opened_store(data, backend="redis", redis_url=redis_server)
    assert svc.ingest_blocking(_purchases(9)).accepted == 9
    before = _read(svc)
    svc.close()
    assert before[0] == [3.0, 6.0]
    for held in ("0123456789abcdef", None):  # another version's layout; a Redis from before layouts were kept
        if held is None:
            redis_client.delete(LAYOUT_KEY)
        else:
            redis_client.set(LAYOUT_KEY, held)
        with pytest.raises(LayoutChanged, match="hanzo rebuild-redis"):
            opened_store(data, backend="redis", redis_url=redis_server)
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "rebuild-redis", "--redis-url", redis_server,
                          "--data-dir", str(data)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "9 events of 1 replica(s)" in run.stdout
    again = opened_store(data, backend="redis", redis_url=redis_server)
    try:
        assert _read(again) == before
    finally:
        again.close()


def test_a_rebuild_never_drops_an_unfinished_erasure_and_says_which_run_to_finish(tmp_path, redis_server,
                                                                                   redis_client):
    from hanzo.server.features.redis_durability import MARK, RebuildUnfinished

    data = tmp_path / "data"
    svc = opened_store(data, backend="redis", redis_url=redis_server)
    assert svc.ingest_blocking(_purchases(3)).accepted == 3
    svc.close()
    redis_client.set(MARK, '{"user": "u0", "sessions": [], "orders": []}')
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "rebuild-redis", "--redis-url", redis_server,
                          "--data-dir", str(data)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "hanzo forget" in run.stderr and "Traceback" not in run.stderr
    assert redis_client.get(MARK).startswith(b'{"user"')  # the erasure's mark is kept
    redis_client.set(MARK, '{"rebuild": true}')  # a rebuild that stopped midway
    with pytest.raises(RebuildUnfinished, match="rebuild-redis"):
        opened_store(data, backend="redis", redis_url=redis_server)
