"""The durable event log: append-only segments of msgpack frames (log_frames.py). A batch is one
frame. `append` returns once the frame is written (and fsynced, under the default policy), so
an acknowledged batch survives a crash of the process (and, fsynced, of the machine); under
fsync = "interval" a timer syncs what was written within the interval, appends or not. On open,
a torn frame at the tail (a crash mid-write) is cut off: it was never acknowledged. Any other
damage stops the open and every replay with LogDamaged, naming the segment and the offset."""
from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import msgpack

from ..models.errors import ResourceExhausted, Unavailable
from .durable import fsync_dir, make_dirs
from .log_frames import Damage, LogDamaged, Scan, follows, pack, payload, read_gaps, scan

log = logging.getLogger(__name__)

FSYNC_POLICIES = ("always", "interval", "never")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_failed(exc: OSError) -> Exception:
    """What a client is told of a batch the log could not take (nothing of it was kept)."""
    if exc.errno in DISK_FULL:
        return ResourceExhausted(f"the event log's disk is full ({os.strerror(exc.errno)}): the batch was not "
                                 f"written and nothing of it is acknowledged; retry once space is freed")
    return Unavailable(f"the event log could not be written ({exc.strerror or exc}): the batch was not written "
                       f"and nothing of it is acknowledged; retry")


class LogBroken(Unavailable):
    """A failed write could not be undone: the log refuses every append until a restart, whose
    recovery reads what is really on disk."""


class EventLog:
    def __init__(self, directory: Path, fsync: str = "always", segment_bytes: int = 64 << 20,
                 fsync_interval_s: float = 0.05) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.directory = make_dirs(Path(directory))
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        self._lock = threading.Lock()
        self._last_sync = 0.0
        self._unsynced = False
        self._broken: str | None = None
        self.next_seq = 0
        self._file = None
        self._recover()
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        if fsync == "interval":
            self._syncer = threading.Thread(target=self._sync_on_timer, name="hanzo-log-sync", daemon=True)
            self._syncer.start()

    # ------------------------------------------------------------------ files

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.log"))

    def _recover(self) -> None:
        segments = self.segments()
        if not segments:
            self._open_segment(0)
            return
        next_seq, last_scan = int(segments[0].stem), Scan()
        for segment, data, result in walk(self.directory):
            next_seq = result.frames[-1].first + result.frames[-1].count if result.frames else next_seq
            last_scan = result
        last = segments[-1]
        if last_scan.tail_bytes:
            log.warning("event log: cut a torn frame at the tail", extra={"segment": last.name,
                                                                         "bytes_cut": last_scan.tail_bytes})
            with open(last, "r+b") as f:
                f.truncate(last_scan.good_end)
                os.fsync(f.fileno())
        self.next_seq = max(next_seq, int(last.stem))
        self._file = open(last, "ab", buffering=0)

    def _open_segment(self, first_seq: int) -> None:
        """A new segment; the one before is synced whole first (under fsync = "interval" or
        "never" it may hold unsynced batches, and a later segment after a gap is damage)."""
        new = open(self.directory / f"{first_seq:020d}.log", "ab", buffering=0)
        if self._file:
            if self._unsynced:
                self._sync_locked()
            self._file.close()
        self._file = new
        fsync_dir(self.directory)

    # ------------------------------------------------------------------ writes

    @property
    def broken(self) -> str | None:
        """Why the log refuses appends until a restart (None: it does not)."""
        return self._broken

    def append(self, records: list[dict[str, Any]]) -> int:
        """Append one batch; returns its first sequence number. Durable on return (per the
        fsync policy). Thread-safe; batches get consecutive sequence numbers. A write or sync
        that fails (a full disk) is undone, the file cut back to where the batch began, and
        raised as a client's error (write_failed): the batch is not in the log."""
        packed = msgpack.packb(records, use_bin_type=True)
        with self._lock:
            if self._broken:
                raise LogBroken(self._broken)
            first = self.next_seq
            if self._file.tell() >= self.segment_bytes:
                self._open_segment(first)
            start = self._file.tell()
            try:
                view = memoryview(pack(packed, first, len(records)))
                while view:
                    view = view[self._file.write(view):]
                self._unsynced = True
                if self.fsync == "always" or (self.fsync == "interval"
                                              and time.monotonic() - self._last_sync >= self.fsync_interval_s):
                    self._sync_locked()
            except OSError as exc:
                self._undo(start, exc)
                raise write_failed(exc) from exc
            self.next_seq = first + len(records)
        return first

    def _undo(self, start: int, cause: OSError) -> None:
        """Cut the segment back to `start` after a failed write; when even that fails, refuse
        every later append (what is on disk is no longer known here)."""
        try:
            os.ftruncate(self._file.fileno(), start)
            os.fdatasync(self._file.fileno())
            self._file.seek(start)
        except OSError as exc:
            self._broken = (f"the event log failed a write ({cause.strerror or cause}) and could not cut it back "
                            f"({exc.strerror or exc}); it takes no more batches until the server is restarted")
            log.error("event log broken", extra={"segment": Path(self._file.name).name, "reason": self._broken})
            raise LogBroken(self._broken) from exc
        log.warning("event log write failed; cut back", extra={"segment": Path(self._file.name).name,
                                                                "error": cause.strerror or str(cause)})

    def _sync_locked(self) -> None:
        os.fdatasync(self._file.fileno())
        self._last_sync = time.monotonic()
        self._unsynced = False

    def _sync_on_timer(self) -> None:
        """fsync = "interval": what was written is synced within the interval even when no
        further append comes to do it."""
        while not self._stop.wait(self.fsync_interval_s):
            with self._lock:
                if self._unsynced and self._file is not None and not self._broken:
                    try:
                        self._sync_locked()
                    except OSError as exc:  # batches already acknowledged may not be on disk
                        self._broken = (f"the event log's timed sync failed ({exc.strerror or exc}); it takes no "
                                        f"more batches until the server is restarted")
                        log.error("event log broken", extra={"reason": self._broken})

    def sync(self) -> None:
        with self._lock:
            self._sync_locked()

    def close(self) -> None:
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
        with self._lock:
            if self._file:
                try:
                    os.fdatasync(self._file.fileno())
                finally:
                    self._file.close()
                    self._file = None

    # ------------------------------------------------------------------ reads

    def replay(self, from_seq: int = 0) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """(first sequence number, records) of every batch holding records at or after
        `from_seq`, in log order; records before `from_seq` are left out."""
        return replay_log(self.directory, from_seq)

    def drop_segments_before(self, seq: int) -> int:
        """Delete whole segments whose records all precede `seq` (retention, once a snapshot
        covers them). Returns how many were deleted."""
        segments = self.segments()
        dropped = 0
        for i, segment in enumerate(segments[:-1]):
            if int(segments[i + 1].stem) <= seq:
                segment.unlink()
                dropped += 1
        return dropped

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.segments())


def walk(directory: Path, from_seq: int = 0) -> Iterator[tuple[Path, bytes, Scan]]:
    """Every segment in order with its bytes and its scan, the sequence numbers checked from
    one frame to the next; LogDamaged at the first damage that is not the last segment's torn
    tail (which the scan leaves out of its frames). `from_seq`: from the segment that holds it
    (the ones before are not read: a reader catching up reads only what it has not)."""
    directory = Path(directory)
    segments = sorted(directory.glob("*.log"))
    while len(segments) > 1 and int(segments[1].stem) <= from_seq:
        segments.pop(0)
    gaps = read_gaps(directory)
    expected = int(segments[0].stem) if segments else 0
    for i, segment in enumerate(segments):
        data = segment.read_bytes()
        result = scan(data, last=i == len(segments) - 1)
        if result.damage:
            raise LogDamaged(Damage(segment.name, result.good_end, result.damage), directory)
        if not follows(expected, int(segment.stem), gaps):
            raise LogDamaged(Damage(segment.name, 0, f"the segment begins at sequence {int(segment.stem)}, the log "
                                                     f"before it ends at {expected}: a segment is missing"), directory)
        expected = int(segment.stem)
        for frame in result.frames:
            if not follows(expected, frame.first, gaps):
                raise LogDamaged(Damage(segment.name, frame.offset, f"a frame begins at sequence {frame.first} "
                                                                    f"where {expected} was due"), directory)
            expected = frame.first + frame.count
        yield segment, data, result


def replay_log(directory: Path, from_seq: int = 0) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """EventLog.replay for a reader of another process's log (training, batch jobs) too: it
    opens nothing for writing and repairs nothing, so a frame the server is still writing is
    simply not read yet (opening an EventLog would cut it as torn, under the server's feet).
    Raises LogDamaged at damage, never skipping past it."""
    for segment, data, result in walk(directory, from_seq):
        for frame in result.frames:
            first, count = frame.first, frame.count
            if first + count <= from_seq:
                continue
            records = msgpack.unpackb(payload(data, frame), raw=False)
            if first < from_seq:
                records = records[from_seq - first:]
                first = from_seq
            yield first, records
