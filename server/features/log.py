"""The durable event log: append-only segments of msgpack frames. A batch is one frame:
magic, length, CRC-32, first sequence number, count, then the msgpack list of its records.
`append` returns once the frame is written (and fsynced, under the default policy), so an
acknowledged batch survives a crash of the process (and, fsynced, of the machine). On open,
a torn frame at the tail (a crash mid-write) is cut off: it was never acknowledged."""
from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

import msgpack

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<2sIIQI")  # magic, payload length, crc32, first seq, count
_MAGIC = b"HZ"
FSYNC_POLICIES = ("always", "interval", "never")


class EventLog:
    def __init__(self, directory: Path, fsync: str = "always", segment_bytes: int = 64 << 20,
                 fsync_interval_s: float = 0.05) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        self._lock = threading.Lock()
        self._last_sync = 0.0
        self.next_seq = 0
        self._file = None
        self._recover()

    # ------------------------------------------------------------------ files

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.log"))

    def _recover(self) -> None:
        segments = self.segments()
        if not segments:
            self._open_segment(0)
            return
        last = segments[-1]
        good, next_seq = 0, int(last.stem)
        with open(last, "rb") as f:
            data = f.read()
        for offset, first, count, _ in _frames(data):
            good = offset
            next_seq = first + count
        if good < len(data):
            log.warning("event log: cut a torn frame at the tail", extra={"segment": last.name,
                                                                         "bytes_cut": len(data) - good})
            with open(last, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        self.next_seq = next_seq
        self._file = open(last, "ab")

    def _open_segment(self, first_seq: int) -> None:
        if self._file:
            self._file.close()
        self._file = open(self.directory / f"{first_seq:020d}.log", "ab")
        _fsync_dir(self.directory)

    # ------------------------------------------------------------------ writes

    def append(self, records: list[dict[str, Any]]) -> int:
        """Append one batch; returns its first sequence number. Durable on return (per the
        fsync policy). Thread-safe; batches get consecutive sequence numbers."""
        payload = msgpack.packb(records, use_bin_type=True)
        with self._lock:
            first = self.next_seq
            if self._file.tell() >= self.segment_bytes:
                self._open_segment(first)
            frame = _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload), first, len(records)) + payload
            self._file.write(frame)
            self._file.flush()
            if self.fsync == "always" or (self.fsync == "interval"
                                          and time.monotonic() - self._last_sync >= self.fsync_interval_s):
                os.fdatasync(self._file.fileno())
                self._last_sync = time.monotonic()
            self.next_seq = first + len(records)
        return first

    def sync(self) -> None:
        with self._lock:
            self._file.flush()
            os.fdatasync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file:
                self._file.flush()
                os.fdatasync(self._file.fileno())
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


def _frames(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(offset after the frame, first seq, count, payload) for each whole, valid frame."""
    offset = 0
    size = _HEADER.size
    while offset + size <= len(data):
        magic, length, crc, first, count = _HEADER.unpack_from(data, offset)
        end = offset + size + length
        if magic != _MAGIC or end > len(data):
            return
        payload = data[offset + size:end]
        if zlib.crc32(payload) != crc:
            return
        offset = end
        yield offset, first, count, payload


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replay_log(directory: Path, from_seq: int = 0) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """EventLog.replay for a reader of another process's log (training, batch jobs): it opens
    nothing for writing and repairs nothing, so a frame the server is still writing is simply
    not read yet (opening an EventLog would cut it as torn, under the server's feet)."""
    segments = sorted(Path(directory).glob("*.log"))
    for i, segment in enumerate(segments):
        if i + 1 < len(segments) and int(segments[i + 1].stem) <= from_seq:
            continue
        with open(segment, "rb") as f:
            data = f.read()
        for _, first, count, payload in _frames(data):
            if first + count <= from_seq:
                continue
            records = msgpack.unpackb(payload, raw=False)
            if first < from_seq:
                records = records[from_seq - first:]
                first = from_seq
            yield first, records
