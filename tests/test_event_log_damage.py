"""Damage in the event log that is not a torn tail: it stops the open and every replay with the
segment and the byte offset named, `hanzo log verify` reports it, `hanzo log repair` keeps every
frame that checks out and records what was lost; and fsync = "interval" syncs on its timer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from hanzo.server.commands import main as hanzo
from hanzo.server.features import log as log_module
from hanzo.server.features.log import EventLog, replay_log
from hanzo.server.features.log_frames import HEADER, LogDamaged
from hanzo.server.features.log_repair import repair, verify


def records(start: int, n: int) -> list[dict]:
    return [{"event_id": f"e{i}", "event_type": "page_view", "timestamp": 1000 + i} for i in range(start, start + n)]


def ids(batches) -> list[str]:
    return [r["event_id"] for _, batch in batches for r in batch]


def written(directory, batches: int = 4, size: int = 3, segment_bytes: int = 64 << 20) -> EventLog:
    log = EventLog(directory, segment_bytes=segment_bytes)
    for k in range(batches):
        log.append(records(k * size, size))
    log.close()
    return log


def flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def frame_offsets(path) -> list[int]:
    data, offsets, offset = path.read_bytes(), [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += HEADER.size + HEADER.unpack_from(data, offset)[1]
    return offsets


def test_a_bad_frame_with_good_frames_after_it_stops_the_open_naming_segment_and_offset(tmp_path):
    segment = written(tmp_path / "log").segments()[0]
    second = frame_offsets(segment)[1]
    flip(segment, second + HEADER.size + 2)  # the second of four frames: acknowledged events behind it
    with pytest.raises(LogDamaged) as info:
        EventLog(tmp_path / "log")
    message = str(info.value)
    assert f"segment {segment.name} at byte {second}" in message and "2 good frame(s) after it" in message
    assert "hanzo log verify" in message and "hanzo log repair" in message
    assert segment.stat().st_size > second  # nothing was cut
    with pytest.raises(LogDamaged):  # a reader stops there too, never skipping past it
        ids(replay_log(tmp_path / "log"))


def test_a_damaged_earlier_segment_is_never_skipped_silently(tmp_path):
    log = written(tmp_path / "log", batches=12, segment_bytes=300)
    first = log.segments()[0]
    flip(first, frame_offsets(first)[-1] + HEADER.size + 1)  # its last frame: a later segment follows
    with pytest.raises(LogDamaged, match=f"segment {first.name} at byte .*a later segment follows"):
        ids(replay_log(tmp_path / "log"))


def test_a_missing_segment_is_damage(tmp_path):
    log = written(tmp_path / "log", batches=12, segment_bytes=300)
    segments = log.segments()
    assert len(segments) >= 3
    segments[1].unlink()
    with pytest.raises(LogDamaged, match=f"segment {segments[2].name} at byte 0: .*a segment is missing"):
        EventLog(tmp_path / "log")


def test_verify_reports_and_repair_keeps_every_good_frame_and_records_the_loss(tmp_path, capsys):
    segment = written(tmp_path / "log").segments()[0]
    flip(segment, frame_offsets(segment)[1] + HEADER.size + 2)
    damaged = segment.read_bytes()
    assert hanzo(["log", "verify", str(tmp_path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["damaged"] and report["records"] == 9  # the three of the bad frame are not counted
    assert report["problems"][0].startswith(f"{segment.name}: byte {frame_offsets(segment)[1]}: a frame that")
    assert segment.read_bytes() == damaged  # verify changes nothing

    assert hanzo(["log", "repair", str(tmp_path)]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["lost_ranges"] == [[3, 6]] and done["rewritten"] == [segment.name]
    assert (tmp_path / "log" / done["quarantined"][0]).read_bytes() == damaged
    assert not done["after"]["damaged"] and done["after"]["recorded_gaps"] == [[3, 6]]
    reopened = EventLog(tmp_path / "log")
    assert reopened.next_seq == 12
    assert ids(reopened.replay()) == [f"e{i}" for i in (0, 1, 2, *range(6, 12))]
    assert reopened.append(records(12, 1)) == 12
    reopened.close()
    assert hanzo(["log", "verify", str(tmp_path / "log")]) == 0


def test_repair_across_a_lost_segment_end_and_a_missing_segment(tmp_path):
    log = written(tmp_path / "log", batches=12, segment_bytes=300)
    segments = log.segments()
    flip(segments[0], frame_offsets(segments[0])[-1] + HEADER.size + 1)
    segments[2].unlink()
    result = repair(tmp_path)
    assert not result["after"]["damaged"]
    kept = ids(replay_log(tmp_path / "log"))
    lost = {f"e{i}" for first, end in result["lost_ranges"] for i in range(first, end)}
    assert sorted(kept + sorted(lost), key=lambda e: int(e[1:])) == [f"e{i}" for i in range(36)]
    assert EventLog(tmp_path / "log").next_seq == 36


def test_a_torn_tail_is_only_reported_by_verify_and_cut_by_the_next_open(tmp_path):
    segment = written(tmp_path / "log").segments()[0]
    segment.write_bytes(segment.read_bytes()[:-4])
    report = verify(tmp_path / "log")
    assert not report.damaged and report.segments[0].torn_tail_bytes > 0
    assert EventLog(tmp_path / "log").next_seq == 9


def test_repair_refuses_while_a_server_holds_the_directory(tmp_path):
    from hanzo.server.features import lock

    written(tmp_path / "log")
    lock.acquire(tmp_path, "server")
    try:  # the lock is per process: another process asks for it
        run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "log", "repair", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and f"pid {os.getpid()}" in run.stderr, run.stderr
    finally:
        lock.release(tmp_path)


def test_log_commands_name_a_directory_without_a_log(tmp_path, capsys):
    assert hanzo(["log", "verify", str(tmp_path)]) == 2
    assert "no event log here" in capsys.readouterr().err


def test_interval_fsync_syncs_on_its_timer_without_another_append(tmp_path, monkeypatch):
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(log_module.os, "fdatasync", lambda fd: (synced.append(time.monotonic()), real(fd)))
    log = EventLog(tmp_path, fsync="interval", fsync_interval_s=0.05)
    log.append(records(0, 1))  # the first append syncs at once (none for an interval before it)
    log.append(records(1, 1))  # within the interval: written, not yet synced
    count = len(synced)
    deadline = time.monotonic() + 5
    while len(synced) == count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(synced) > count  # the timer synced the second batch with no third append
    time.sleep(0.2)
    assert len(synced) == count + 1  # and only once: nothing more to sync
    log.close()


def test_a_server_refuses_to_start_on_a_damaged_log_and_says_what_to_run(tmp_path):
    segment = written(tmp_path / "data" / "log").segments()[0]
    flip(segment, frame_offsets(segment)[1] + HEADER.size + 2)
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "serve", "--port", "0", "--no-demo-models",
                          "--data-dir", str(tmp_path / "data"), "--log-format", "text"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("hanzo serve: the event log") and f"segment {segment.name} at byte" in last
    assert f"hanzo log repair {tmp_path / 'data'}" in last


def test_overlapping_gaps_from_two_repairs_are_crossed():
    from hanzo.server.features.log_frames import follows

    assert follows(1, 3, [(1, 2), (1, 3)]) and follows(1, 5, [(1, 3), (2, 5)])
    assert not follows(1, 4, [(1, 2), (1, 3)]) and follows(4, 4, [])
