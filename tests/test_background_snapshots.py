"""Snapshots while serving are written by a forked child: the store goes on taking batches while
it writes, what it writes is the store as of one batch boundary, the data directory stays locked
by the server alone, a child that fails is reported and retried, and a parent killed
mid-snapshot takes its child with it."""
from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from helpers import opened_store, simulated_world, user_feature_values

from hanzo.server.features import lock, snapshots
from hanzo.server.features.service import FeatureService


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return simulated_world(tmp_path_factory.mktemp("sim"), days=12, seed=7, users=300, products=90, fraud_level=5)


async def ingest_all(svc: FeatureService, events: list, step: int, seen: list) -> None:
    """Batch after batch; a batch goes in while each child writes, then the child is awaited
    (else the next one due would be skipped while it runs)."""
    writing = None
    for i in range(0, len(events), step):
        await svc.ingest(events[i:i + step])
        await asyncio.sleep(0)  # the fork's own turn on the loop
        if writing is not None:
            await settled(svc)
            writing = None
        elif svc._child is not None:
            writing = svc._child
            seen.append((writing.seq, writing.pid))
    await settled(svc)


async def settled(svc: FeatureService) -> None:
    await svc.background_settled()
    assert svc._child is None


def test_a_background_snapshot_is_the_store_at_its_batch_and_batches_go_on_meanwhile(tmp_path, world):
    out, events = world
    events = events[:2300]
    svc = opened_store(tmp_path / "a", out / "catalog.jsonl", snapshot_every_events=500)
    seen: list = []
    asyncio.run(ingest_all(svc, events, 100, seen))
    assert [seq for seq, _ in seen] == [500, 1000, 1500, 2000]
    assert all(pid != os.getpid() for _, pid in seen)
    kept = snapshots.snapshot_dirs(tmp_path / "a" / "snapshots")
    assert [int(p.name) for p in kept] == [1500, 2000]
    # the snapshot at 2000 is exactly a store that took the first 2000 events and stopped
    reference = opened_store(tmp_path / "b", out / "catalog.jsonl", snapshot_every_events=10**9)
    for i in range(0, 2000, 100):
        reference.ingest_blocking(events[i:i + 100])
    reference.close()
    only_snapshot = tmp_path / "c"
    (only_snapshot / "snapshots").mkdir(parents=True)
    os.rename(kept[-1], only_snapshot / "snapshots" / kept[-1].name)
    from_snapshot = opened_store(only_snapshot, out / "catalog.jsonl")
    again = opened_store(tmp_path / "b", out / "catalog.jsonl")
    assert from_snapshot.applied_seq == 2000
    assert list(from_snapshot.store.entities["user"].keys) == list(again.store.entities["user"].keys)
    assert np.array_equal(user_feature_values(from_snapshot), user_feature_values(again))
    # its dedup index holds the ids of the batch that made it due: a resend of it is a duplicate
    assert from_snapshot.ingest_blocking(events[1900:2000]).duplicates == 100
    from_snapshot.close()
    again.close()
    svc.close()


def test_the_server_keeps_its_directory_locked_after_a_child_has_come_and_gone(tmp_path, world):
    out, events = world
    svc = opened_store(tmp_path / "a", out / "catalog.jsonl", snapshot_every_events=300)
    asyncio.run(ingest_all(svc, events[:700], 100, []))
    fd = os.open(lock.lock_file(tmp_path / "a"), os.O_RDWR)  # another open file: what another process meets
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    svc.close()


def test_a_child_that_fails_is_reported_and_the_next_snapshot_is_tried(tmp_path, world, caplog):
    out, events = world
    svc = opened_store(tmp_path / "a", out / "catalog.jsonl", snapshot_every_events=400)
    real = svc._write_in_child
    failed_once = tmp_path / "failed-once"  # the child's memory is its own: what it did goes in a file

    def flaky():
        if not failed_once.exists():
            failed_once.touch()
            raise OSError(28, "No space left on device")
        return real()

    svc._write_in_child = flaky
    with caplog.at_level("ERROR"):
        asyncio.run(ingest_all(svc, events[:900], 100, []))
    assert any("No space left on device" in getattr(r, "error", "") for r in caplog.records)
    assert [int(p.name) for p in snapshots.snapshot_dirs(tmp_path / "a" / "snapshots")] == [800]
    svc.close()


CHILD_OUTLIVES = textwrap.dedent("""
    import asyncio, sys, time
    from pathlib import Path
    from hanzo.server.features.service import FeatureService, FeatureStoreConfig
    svc = FeatureService(FeatureStoreConfig(data_dir=Path(sys.argv[1]), snapshot_every_events=1))
    svc.open()
    def slow():
        time.sleep(60)
        return {}
    svc._write_in_child = slow
    async def main():
        await svc.ingest([{"event_id": "e1", "event_type": "product_view", "timestamp": int(time.time() * 1000),
                           "user_id": "u1", "session_id": "s1", "payload": {"product_id": "p1"}, "context": {}}])
        while svc._child is None:
            await asyncio.sleep(0)
        print(svc._child.pid, flush=True)
        await asyncio.sleep(60)
    asyncio.run(main())
""")


def test_a_parent_killed_mid_snapshot_takes_its_child_and_frees_the_directory(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD_OUTLIVES, str(tmp_path / "d")], stdout=subprocess.PIPE,
                            text=True)
    child = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    for _ in range(200):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the snapshot child {child} outlived its parent")
    lock.acquire(tmp_path / "d", "test")
    lock.release(tmp_path / "d")


def test_the_child_holds_no_copy_of_the_directory_lock(tmp_path):
    from hanzo.server.features import snapshot_child

    lock.acquire(tmp_path / "d", "test")
    held = [fd for fd, _ in lock._held.values()]

    def report() -> dict:
        still_open = []
        for fd in held:
            try:
                os.fstat(fd)
                still_open.append(fd)
            except OSError:
                pass
        return {"still_open": still_open, "pid": os.getpid()}

    try:
        result = snapshot_child.start(report, 0).wait()
    finally:
        lock.release(tmp_path / "d")
    assert result["still_open"] == [] and result["pid"] != os.getpid()
