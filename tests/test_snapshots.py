"""Snapshots written whole: fsynced, read back before an older one goes, the newest two kept; a
torn newest snapshot falls back to the one before and a longer replay; retention keeps the log
that fallback needs."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import opened_store, simulated_world, user_feature_values

from hanzo.server.features import snapshots
from hanzo.server.features.service import FeatureService


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return simulated_world(tmp_path_factory.mktemp("sim"), days=12, seed=5, users=300, products=90, fraud_level=5)


def opened(tmp_path, catalog, **options) -> FeatureService:
    return opened_store(tmp_path / "data", catalog, **options)


def crash(svc: FeatureService) -> None:
    """Stop without the final snapshot: what a SIGKILL leaves (the log is fsynced per batch)."""
    svc._writer.shutdown(wait=True)
    svc.log.close()


def test_the_newest_two_snapshots_are_kept_and_each_reads_back_whole(tmp_path, world):
    out, events = world
    svc = opened(tmp_path, out / "catalog.jsonl", snapshot_every_events=400)
    for i in range(0, 2000, 200):
        svc.ingest_blocking(events[i:i + 200])
    kept = snapshots.snapshot_dirs(tmp_path / "data" / "snapshots")
    assert [int(p.name) for p in kept] == [1600, 2000]
    for path in kept:
        state, arrays = snapshots.read(path)
        assert state["applied_seq"] == int(path.name) and arrays
    assert not [p for p in (tmp_path / "data" / "snapshots").iterdir() if p.name.startswith(".staging")]
    svc.close()


@pytest.mark.parametrize("damage", ["truncated arrays", "no state", "garbled state"])
def test_a_torn_newest_snapshot_falls_back_to_the_one_before_and_a_longer_replay(tmp_path, world, damage):
    out, events = world
    svc = opened(tmp_path, out / "catalog.jsonl", snapshot_every_events=500)
    for i in range(0, 2300, 100):
        svc.ingest_blocking(events[i:i + 100])
    expected, users = user_feature_values(svc), list(svc.store.entities["user"].keys)
    crash(svc)
    newest = snapshots.snapshot_dirs(tmp_path / "data" / "snapshots")[-1]
    assert int(newest.name) == 2000
    if damage == "truncated arrays":
        data = (newest / "arrays.npz").read_bytes()
        (newest / "arrays.npz").write_bytes(data[:len(data) // 2])
    elif damage == "no state":
        (newest / "state.msgpack").unlink()
    else:
        (newest / "state.msgpack").write_bytes(b"\xc1" * 64)
    again = opened(tmp_path, out / "catalog.jsonl")
    assert again.applied_seq == 2300 and list(again.store.entities["user"].keys) == users
    assert np.array_equal(user_feature_values(again), expected)
    again.close()


def test_retention_keeps_the_segments_the_older_snapshot_needs(tmp_path, world):
    out, events = world
    svc = opened(tmp_path, out / "catalog.jsonl", snapshot_every_events=600,
                 log_retention_days=0.001, retention_days=0)
    svc.log.segment_bytes = 20_000  # many small segments, so retention has some to drop
    for i in range(0, 2400, 100):
        svc.ingest_blocking(events[i:i + 100])
    oldest_kept = snapshots.oldest_kept_seq(tmp_path / "data" / "snapshots")
    assert oldest_kept == 1800
    first_segment = int(svc.log.segments()[0].stem)
    assert 0 < first_segment <= oldest_kept  # dropped some, and none the older snapshot replays from
    expected = user_feature_values(svc)
    crash(svc)
    newest = snapshots.snapshot_dirs(tmp_path / "data" / "snapshots")[-1]
    (newest / "arrays.npz").write_bytes(b"torn")
    again = opened(tmp_path, out / "catalog.jsonl")
    assert again.applied_seq == 2400 and np.array_equal(user_feature_values(again), expected)
    again.close()


def test_a_staging_directory_a_crash_left_is_removed_by_the_next_write(tmp_path):
    root = tmp_path / "snapshots"
    (root / ".staging-7").mkdir(parents=True)
    (root / ".staging-7" / "arrays.npz").write_bytes(b"half")
    snapshots.write(root, 9, {"a": np.arange(3)}, {"applied_seq": 9})
    assert [p.name for p in root.iterdir()] == ["00000000000000000009"]


def test_arrays_written_in_pieces_read_back_as_np_savez_would(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshots, "_PIECE", 1000)  # many pieces and syncs even for small arrays
    monkeypatch.setattr(snapshots, "_SYNC_EVERY", 5000)
    arrays = {"wide": np.arange(12_345, dtype=np.int64).reshape(5, -1), "empty": np.zeros(0, np.float32),
              "scalar": np.array(5, np.uint8), "strided": np.ones((3, 4))[:, ::2],
              "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "records": np.zeros(7, dtype=[("x", np.int32), ("y", np.float64)])}
    snapshots.write_arrays(tmp_path / "a.npz", arrays)
    with np.load(tmp_path / "a.npz") as back:
        assert sorted(back.files) == sorted(arrays)
        for name, array in arrays.items():
            assert back[name].dtype == array.dtype and back[name].shape == array.shape
            assert np.array_equal(back[name], array)
    with pytest.raises(TypeError, match="'objects'"):
        snapshots.write_arrays(tmp_path / "b.npz", {"objects": np.array([{}, []], dtype=object)})


def test_a_log_trimmed_by_retention_with_no_snapshot_left_to_cover_it_stops_the_start(tmp_path, world):
    from hanzo.server.features.log_frames import LogTooShort

    out, events = world
    svc = opened(tmp_path, out / "catalog.jsonl", snapshot_every_events=600,
                 log_retention_days=0.001, retention_days=0)
    svc.log.segment_bytes = 20_000
    for i in range(0, 2400, 100):
        svc.ingest_blocking(events[i:i + 100])
    begins = int(svc.log.segments()[0].stem)
    assert begins > 0
    crash(svc)
    for kept in snapshots.snapshot_dirs(tmp_path / "data" / "snapshots"):
        (kept / "arrays.npz").write_bytes(b"torn")  # neither snapshot reads back: replay would start at 0
    with pytest.raises(LogTooShort, match=f"begins at sequence {begins}.*needs it from 0 .no snapshot reads back"):
        opened(tmp_path, out / "catalog.jsonl")
