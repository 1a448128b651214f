"""The event log's frames, and what a segment's bytes say about themselves.

A frame: magic, payload length, CRC-32 of the payload, first sequence number, record count,
then the payload (a msgpack list of records). A segment is frames back to back; its file name
is the first sequence number it was opened for, and every frame's first sequence number is
the one after the frame before it (across segments too), except across a range that `hanzo
log repair` recorded as lost (gaps.json).

Only one kind of damage is expected and cut on its own: the torn tail, an incomplete or
unverifiable last frame of the last segment, which was being written when the process or the
machine stopped and so was never acknowledged (an acknowledged frame was written whole, and
fsynced under the default policy). Anything else (a frame that fails its checksum with good
frames after it, a segment that ends in a bad frame while a later segment exists, a sequence
number out of place) held acknowledged events: it is reported with the segment and the byte
offset, and nothing reads past it until `hanzo log repair` says what it does about it."""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

HEADER = struct.Struct("<2sIIQI")  # magic, payload length, crc32, first seq, count
MAGIC = b"HZ"
GAPS_FILE = "gaps.json"


@dataclass(frozen=True)
class Frame:
    offset: int  # where the frame starts in its segment
    end: int  # the byte after it
    first: int
    count: int


@dataclass(frozen=True)
class Damage:
    segment: str
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"segment {self.segment} at byte {self.offset}: {self.reason}"


class LogDamaged(RuntimeError):
    """The log holds damage that is not a torn tail; nothing past it is read."""

    def __init__(self, damage: Damage, directory: Path) -> None:
        data_dir = directory.parent if directory.name == "log" else directory
        super().__init__(f"the event log in {directory} is damaged, {damage}. Acknowledged events may be "
                         f"behind it, so the store does not start on it: `hanzo log verify {data_dir}` lists the "
                         f"damage, `hanzo log repair {data_dir}` keeps every frame that checks out and records "
                         f"what was lost")
        self.damage = damage


class LogTooShort(LogDamaged):
    """The log begins after the position the store starts from: events between are nowhere."""

    def __init__(self, directory: Path, begins: int, needed: int, why: str) -> None:
        RuntimeError.__init__(self, (
            f"the event log in {directory} begins at sequence {begins}, but the store needs it from {needed} "
            f"({why}): retention dropped the segments between while a snapshot covered them. Starting would leave "
            f"those events out of every feature without a word, so the store does not start: restore the "
            f"snapshots directory or the segments from a backup (or, after a change of feature definitions, go "
            f"back to the definitions the snapshot was written with)"))
        self.damage = Damage(f"{begins:020d}.log", 0, f"begins at {begins}, {needed} needed")


@dataclass
class Scan:
    """One segment read through: its good frames, where they end, and what follows them."""
    frames: list[Frame] = field(default_factory=list)
    good_end: int = 0  # the byte after the last good frame before any damage
    size: int = 0
    damage: str | None = None  # why the bytes after good_end are not a torn tail
    later_frames: list[Frame] = field(default_factory=list)  # good frames found after the damage

    @property
    def tail_bytes(self) -> int:
        return self.size - self.good_end


def frame_at(data: bytes | memoryview, offset: int) -> Frame | None:
    """The whole, checksummed frame starting at `offset`, or None."""
    if offset + HEADER.size > len(data):
        return None
    magic, length, crc, first, count = HEADER.unpack_from(data, offset)
    end = offset + HEADER.size + length
    if magic != MAGIC or end > len(data) or zlib.crc32(data[offset + HEADER.size:end]) != crc:
        return None
    return Frame(offset, end, first, count)


def payload(data: bytes | memoryview, frame: Frame) -> bytes:
    return bytes(data[frame.offset + HEADER.size:frame.end])


def pack(payload_bytes: bytes, first: int, count: int) -> bytes:
    return HEADER.pack(MAGIC, len(payload_bytes), zlib.crc32(payload_bytes), first, count) + payload_bytes


def scan(data: bytes, last: bool) -> Scan:
    """Read a segment's frames up to the first that does not check out, then look past it for
    any later good frame: with none after it, the bytes are a torn tail when this is the last
    segment; otherwise, damage."""
    result = Scan(size=len(data))
    offset = 0
    while offset < len(data):
        frame = frame_at(data, offset)
        if frame is None:
            break
        result.frames.append(frame)
        offset = frame.end
    result.good_end = offset
    if offset == len(data):
        return result
    result.later_frames = list(_frames_after(data, offset + 1))
    if result.later_frames:
        result.damage = (f"a frame that does not check out, with {len(result.later_frames)} good frame(s) after it")
    elif not last:
        result.damage = "the segment ends in a frame that does not check out, and a later segment follows"
    return result


def _frames_after(data: bytes, start: int) -> Iterator[Frame]:
    """Good frames anywhere after `start`, back to back from the first one found."""
    position = data.find(MAGIC, start)
    while position != -1:
        frame = frame_at(data, position)
        if frame is not None:
            while frame is not None:
                yield frame
                frame = frame_at(data, frame.end)
            return
        position = data.find(MAGIC, position + 1)


def read_gaps(directory: Path) -> list[tuple[int, int]]:
    """The sequence ranges [first, end) `hanzo log repair` recorded as lost."""
    path = Path(directory) / GAPS_FILE
    if not path.exists():
        return []
    return [(int(first), int(end)) for first, end in json.loads(path.read_text())["lost"]]


def follows(expected: int, first: int, gaps: list[tuple[int, int]]) -> bool:
    """Whether a frame starting at `first` may follow one that ended at `expected`: directly,
    or across recorded gaps that cover the whole space between."""
    while expected != first:
        # the furthest a recorded gap reaches from here: gaps recorded by two repairs may overlap
        ends = [end for start, end in gaps if start <= expected < end <= first]
        if not ends:
            return False
        expected = max(ends)
    return True
