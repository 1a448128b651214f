"""The durable log and the dedup index."""
import numpy as np
import pytest

from hanzo.server.features.dedup import DedupIndex, id_hashes
from hanzo.server.features.log import EventLog, replay_log


def records(start, n):
    return [{"event_id": f"e{i}", "event_type": "page_view", "timestamp": 1000 + i, "user_id": None,
             "session_id": "s", "payload": {}, "context": {}} for i in range(start, start + n)]


def test_append_and_replay_in_order_across_segments(tmp_path):
    log = EventLog(tmp_path, segment_bytes=2000)
    for k in range(10):
        assert log.append(records(k * 7, 7)) == k * 7
    assert len(log.segments()) > 1
    replayed = [r["event_id"] for _, batch in log.replay() for r in batch]
    assert replayed == [f"e{i}" for i in range(70)]
    assert [r["event_id"] for _, b in log.replay(33) for r in b] == [f"e{i}" for i in range(33, 70)]
    log.close()
    reopened = EventLog(tmp_path, segment_bytes=2000)
    assert reopened.next_seq == 70 and reopened.append(records(70, 1)) == 70


@pytest.mark.parametrize("cut", [1, 5, 30])
def test_a_torn_tail_is_cut_on_open(tmp_path, cut):
    log = EventLog(tmp_path)
    log.append(records(0, 5))
    log.append(records(5, 5))
    log.close()
    segment = log.segments()[-1]
    data = segment.read_bytes()
    segment.write_bytes(data[:-cut])  # a crash in the middle of writing the second frame
    reopened = EventLog(tmp_path)
    assert reopened.next_seq == 5
    assert [r["event_id"] for _, b in reopened.replay() for r in b] == [f"e{i}" for i in range(5)]
    assert reopened.append(records(5, 1)) == 5


def test_a_reader_of_a_live_log_repairs_nothing(tmp_path):
    """Training and batch jobs read a running server's log: a frame still being written is
    not read yet, and the file is left exactly as it was (the writer finishes the frame)."""
    log = EventLog(tmp_path)
    log.append(records(0, 5))
    log.append(records(5, 5))
    segment = log.segments()[-1]
    whole = segment.read_bytes()
    segment.write_bytes(whole[:-7])  # the second frame half written
    assert [r["event_id"] for _, b in replay_log(tmp_path) for r in b] == [f"e{i}" for i in range(5)]
    assert segment.read_bytes() == whole[:-7]
    segment.write_bytes(whole)  # the writer completes it
    assert len([r for _, b in replay_log(tmp_path) for r in b]) == 10
    log.close()


def test_a_last_frame_that_fails_its_checksum_is_a_torn_tail(tmp_path):
    # written but never synced whole: a power loss can leave the length without the bytes
    log = EventLog(tmp_path)
    log.append(records(0, 3))
    log.append(records(3, 3))
    log.close()
    segment = log.segments()[-1]
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert EventLog(tmp_path).next_seq == 3


def test_retention_drops_only_whole_covered_segments(tmp_path):
    log = EventLog(tmp_path, segment_bytes=1500)
    for k in range(12):
        log.append(records(k * 5, 5))
    before = log.segments()
    dropped = log.drop_segments_before(31)
    after = log.segments()
    assert dropped == len(before) - len(after) > 0
    first_left = int(after[0].stem)
    assert first_left <= 31
    assert [r["event_id"] for _, b in log.replay(31) for r in b][0] == "e31"


def test_fsync_policy_is_checked(tmp_path):
    with pytest.raises(ValueError, match="fsync"):
        EventLog(tmp_path, fsync="sometimes")


def test_dedup_within_and_across_batches_and_the_horizon():
    index = DedupIndex(horizon_ms=1000, capacity=16)
    ids = [f"id{i}" for i in range(100)]
    new = index.check_and_add(id_hashes(ids + ["id3"]), np.full(101, 5000, np.int64), watermark=5000)
    assert new[:100].all() and not new[100]
    again = index.check_and_add(id_hashes(["id7", "fresh"]), np.array([5000, 5000]), watermark=5000)
    assert again.tolist() == [False, True]
    # Past the horizon, an id is forgotten.
    later = index.check_and_add(id_hashes(["id7"]), np.array([7000]), watermark=7000)
    assert later.tolist() == [True]
    index.forget(id_hashes(["fresh"]), watermark=7000)
    assert index.check_and_add(id_hashes(["fresh"]), np.array([7000]), watermark=7000).tolist() == [True]


def test_dedup_grows_and_keeps_what_it_holds():
    index = DedupIndex(horizon_ms=10**12, capacity=16)
    ids = [f"x{i}" for i in range(5000)]
    for start in range(0, 5000, 500):
        index.check_and_add(id_hashes(ids[start:start + 500]), np.full(500, 1, np.int64), watermark=1)
    assert index.keys.shape[0] >= 8192
    assert not index.check_and_add(id_hashes(ids), np.full(5000, 1, np.int64), watermark=1).any()
