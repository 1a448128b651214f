"""Power loss and SIGKILL, with the real files: the durable-image layer keeps only what was
fsynced (checked on its own), and crash rounds of ingestion and snapshots under it, and under
SIGKILL, lose no acknowledged event and count none twice."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from hanzo.loadtest.durable_image import rebuild


def traced(root, shadow, script: str) -> None:
    code = (f"from pathlib import Path\nfrom hanzo.loadtest.durable_image import DurableImage\n"
            f"DurableImage(Path({str(root)!r}), Path({str(shadow)!r})).install()\nimport os\n"
            + textwrap.dedent(script))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=root)


def sync_dir(path) -> str:
    return f"fd = os.open({str(path)!r}, os.O_RDONLY); os.fsync(fd); os.close(fd)\n"


def test_only_what_was_fsynced_survives(tmp_path):
    root, shadow = tmp_path / "root", tmp_path / "shadow"
    root.mkdir()
    (root / "old").write_bytes(b"before tracing")
    traced(root, shadow, f"""
        with open("synced", "wb") as f:
            f.write(b"kept"); f.flush(); os.fsync(f.fileno())
            f.write(b" and lost")  # appended after the sync
        with open("unsynced", "wb") as f:
            f.write(b"data never synced")
        {sync_dir(root)}
        with open("late", "wb") as f:  # a name no directory sync saw
            f.write(b"x"); f.flush(); os.fsync(f.fileno())
        """)
    image = rebuild(shadow, tmp_path / "after")
    assert sorted(p.name for p in image.iterdir()) == ["old", "synced", "unsynced"]
    assert (image / "synced").read_bytes() == b"kept"
    assert (image / "unsynced").read_bytes() == b""
    assert (image / "old").read_bytes() == b"before tracing"


def test_a_rename_is_durable_only_with_its_directory_and_a_reused_inode_is_a_new_file(tmp_path):
    root, shadow = tmp_path / "root", tmp_path / "shadow"
    root.mkdir()
    traced(root, shadow, f"""
        with open("tmp", "wb") as f:
            f.write(b"v1"); f.flush(); os.fsync(f.fileno())
        {sync_dir(root)}
        os.replace("tmp", "final")  # the directory not synced after: the old name is what survives
        """)
    image = rebuild(shadow, tmp_path / "a")
    assert [p.name for p in image.iterdir()] == ["tmp"] and (image / "tmp").read_bytes() == b"v1"

    root2, shadow2 = tmp_path / "root2", tmp_path / "shadow2"
    root2.mkdir()
    traced(root2, shadow2, f"""
        for i in range(20):  # freed inode numbers come back: each new file must start empty
            with open("x", "wb") as f:
                f.write(b"old"); f.flush(); os.fsync(f.fileno())
            os.unlink("x")
            with open("y%d" % i, "wb") as f:
                f.write(b"new, never synced")
        {sync_dir(root2)}
        """)
    image = rebuild(shadow2, tmp_path / "b")
    assert sorted(p.name for p in image.iterdir()) == sorted(f"y{i}" for i in range(20))
    assert all(p.read_bytes() == b"" for p in image.iterdir())


def test_a_new_logs_first_acknowledged_batch_survives_a_power_loss(tmp_path):
    from hanzo.server.features.log import replay_log

    root, shadow = tmp_path / "root", tmp_path / "shadow"
    root.mkdir()
    traced(root, shadow, f"""
        from hanzo.server.features.log import EventLog
        log = EventLog(Path({str(root / "data" / "log")!r}))
        log.append([{{"event_id": "e1", "timestamp": 1}}])  # acknowledged: the directories too
        """)
    image = rebuild(shadow, tmp_path / "after")
    assert [r["event_id"] for _, batch in replay_log(image / "data" / "log") for r in batch] == ["e1"]


@pytest.mark.slow
@pytest.mark.parametrize("mode, backend", [("power", "embedded"), ("sigkill", "embedded"), ("power", "redis")])
def test_crash_rounds_lose_no_acknowledged_event_and_count_none_twice(tmp_path, mode, backend, request):
    from hanzo.loadtest.crash_rounds import main

    extra = ["--redis-url", request.getfixturevalue("redis_server")] if backend == "redis" else []
    report = main(["--mode", mode, "--rounds", "4", "--days", "6", "--snapshot-every", "200", "--kill-in",
                   "snapshot", "--workdir", str(tmp_path), *extra])
    assert report["rounds"] == 4 and report["lost"] == 0 and report["twice"] == 0, report
    assert report["killed_during_snapshot"] >= 2, report
    final = report["final"]
    assert final["rows_compared"] > 50 and final["rows_mismatched"] == 0, final
    assert final["logged"] == report["events"]  # every event in the log exactly once in the end


class _FullDisk:
    """The segment's file, whose writes stop partway with ENOSPC while `full` is set."""

    def __init__(self, real) -> None:
        self.real, self.full = real, True

    def write(self, data) -> int:
        if self.full:
            self.real.write(bytes(data[:len(data) // 2]))  # part of the frame reached the file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_write_that_finds_the_disk_full_is_cut_back_and_refused(tmp_path):
    from hanzo.server.features.log import EventLog, replay_log
    from hanzo.server.models.errors import ResourceExhausted

    log = EventLog(tmp_path)
    log.append([{"event_id": "a", "timestamp": 1}])
    size = log.segments()[0].stat().st_size
    log._file = disk = _FullDisk(log._file)
    with pytest.raises(ResourceExhausted, match="disk is full"):
        log.append([{"event_id": "b", "timestamp": 2}])
    assert log.segments()[0].stat().st_size == size  # the half frame is gone
    disk.full = False  # space returns
    assert log.append([{"event_id": "c", "timestamp": 3}]) == 1
    log.close()
    assert [r["event_id"] for _, batch in replay_log(tmp_path) for r in batch] == ["a", "c"]
    assert EventLog(tmp_path).next_seq == 2  # and it opens without damage


def test_a_failed_write_that_cannot_be_undone_stops_the_log(tmp_path, monkeypatch):
    from hanzo.server.features import log as log_module
    from hanzo.server.features.log import EventLog, LogBroken

    log = EventLog(tmp_path)
    log._file = _FullDisk(log._file)

    def no_truncate(fd, length):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(log_module.os, "ftruncate", no_truncate)
    with pytest.raises(LogBroken, match="restarted"):
        log.append([{"event_id": "b", "timestamp": 2}])
    with pytest.raises(LogBroken):  # every later append too: what is on disk is not known
        log.append([{"event_id": "c", "timestamp": 3}])


@pytest.mark.slow
def test_a_full_disk_under_a_real_server_is_refused_then_recovered(tmp_path):
    from hanzo.loadtest.disk_full import can_mount, main

    if not can_mount(tmp_path):
        pytest.skip("mounting a small tmpfs needs root or sudo without a password; the ENOSPC tests above cover the log")
    report = main(["--size-kib", "4096", "--leave-kib", "128", "--full-seconds", "0.5", "--days", "3",
                   "--workdir", str(tmp_path)])
    assert report["refusals"] and set(report["refusals"]) == {"RESOURCE_EXHAUSTED"}, report
    assert report["acked"] == report["events"] == report["logged"], report
    assert report["lost"] == 0 and report["twice"] == 0 and report["recovered_s"] is not None


def test_a_segment_switch_under_interval_fsync_syncs_the_segment_it_leaves(tmp_path):
    from hanzo.server.features.log import EventLog

    root, shadow = tmp_path / "root", tmp_path / "shadow"
    root.mkdir()
    traced(root, shadow, f"""
        from hanzo.server.features.log import EventLog
        log = EventLog(Path({str(root / "log")!r}), fsync="interval", fsync_interval_s=3600, segment_bytes=200)
        for i in range(6):  # two frames a segment; after the first append, only a switch syncs
            log.append([{{"event_id": "e%d" % i, "timestamp": i, "pad": "x" * 120}}])
        """)
    image = rebuild(shadow, tmp_path / "after")
    reopened = EventLog(image / "log")  # opens: no segment missing behind a later one
    assert reopened.next_seq == 4  # the two segments it left are whole; the last one's batches were never synced
