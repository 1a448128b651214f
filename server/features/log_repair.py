"""`hanzo log verify` and `hanzo log repair`: what is wrong with an event log, and the one
explicit way past it.

Verify reads every segment and reports, without changing anything: segments, frames, records,
the sequence range, a torn tail (cut by the next open), and every damage with its segment and
byte offset. Repair, with the data directory's lock held (no server may be running on it):
copies each damaged segment into log/quarantine/ first, rewrites it with only the frames that
check out (temporary file, fsync, rename, fsync of the directory), and records the sequence
ranges that were lost in log/gaps.json, so replay may cross them and everyone can see what
they were. It never invents a record."""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import lock
from .durable import fsync_dir, fsync_file
from .log_frames import GAPS_FILE, Frame, follows, read_gaps, scan


@dataclass
class SegmentReport:
    name: str
    bytes: int
    frames: int
    records: int
    first: int | None
    end: int | None  # the sequence number after its last record
    torn_tail_bytes: int = 0
    damage: list[str] = field(default_factory=list)


@dataclass
class LogReport:
    directory: str
    segments: list[SegmentReport] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # recorded by an earlier repair

    @property
    def damaged(self) -> bool:
        return any(segment.damage for segment in self.segments)

    def summary(self) -> dict:
        frames = sum(s.frames for s in self.segments)
        records = sum(s.records for s in self.segments)
        return {"directory": self.directory, "segments": len(self.segments), "frames": frames, "records": records,
                "damaged": self.damaged, "recorded_gaps": self.gaps,
                "problems": [f"{s.name}: {d}" for s in self.segments for d in s.damage]}

    def to_dict(self) -> dict:
        return {**self.summary(), "per_segment": [asdict(s) for s in self.segments]}


def log_directory(data_dir: Path) -> Path:
    """A store's data directory or its log directory itself: the directory holding *.log."""
    data_dir = Path(data_dir)
    if (data_dir / "log").is_dir():
        return data_dir / "log"
    if any(data_dir.glob("*.log")):
        return data_dir
    raise FileNotFoundError(f"{data_dir}: no event log here (neither {data_dir}/log nor *.log segments)")


def verify(directory: Path) -> LogReport:
    directory = Path(directory)
    segments = sorted(directory.glob("*.log"))
    report = LogReport(str(directory), gaps=read_gaps(directory))
    expected = int(segments[0].stem) if segments else 0
    for i, segment in enumerate(segments):
        data = segment.read_bytes()
        result = scan(data, last=i == len(segments) - 1)
        frames = result.frames + result.later_frames
        entry = SegmentReport(segment.name, len(data), len(frames), sum(f.count for f in frames),
                              frames[0].first if frames else None,
                              frames[-1].first + frames[-1].count if frames else None)
        if result.damage:
            entry.damage.append(f"byte {result.good_end}: {result.damage}")
        elif result.tail_bytes:
            entry.torn_tail_bytes = result.tail_bytes
        if not follows(expected, int(segment.stem), report.gaps):
            entry.damage.append(f"byte 0: begins at sequence {int(segment.stem)}, the log before it ends at "
                                f"{expected}")
        expected = int(segment.stem)
        for frame in frames:
            if not follows(expected, frame.first, report.gaps):
                entry.damage.append(f"byte {frame.offset}: sequence {frame.first} where {expected} was due")
            expected = frame.first + frame.count
        report.segments.append(entry)
    return report


def repair(data_dir: Path) -> dict:
    """Repair the log of `data_dir` (see the module's words); what was done, and lost."""
    directory = log_directory(data_dir)
    store_dir = directory.parent if directory.name == "log" else directory
    lock.acquire(store_dir, "server, bulk ingest or log repair")
    try:
        return _repair_locked(directory)
    finally:
        lock.release(store_dir)


def _repair_locked(directory: Path) -> dict:
    before = verify(directory)
    segments = sorted(directory.glob("*.log"))
    gaps = list(before.gaps)
    quarantined, rewritten = [], []
    expected = int(segments[0].stem) if segments else 0
    for i, segment in enumerate(segments):
        data = segment.read_bytes()
        result = scan(data, last=i == len(segments) - 1)
        frames = result.frames + result.later_frames
        start = int(segment.stem)
        if expected < start and not follows(expected, start, gaps):
            gaps.append((expected, start))  # a segment that is gone
        expected = start
        kept: list[Frame] = []
        for frame in frames:
            if frame.first < expected:  # out of place (overlapping what came before): dropped
                continue
            if frame.first > expected and not follows(expected, frame.first, gaps):
                gaps.append((expected, frame.first))
            kept.append(frame)
            expected = frame.first + frame.count
        if result.damage or len(kept) != len(frames):
            quarantined.append(_quarantine(directory, segment))
            _rewrite(segment, data, kept)
            rewritten.append(segment.name)
    if gaps != before.gaps:
        _write_gaps(directory, gaps)
    after = verify(directory)
    return {"before": before.summary(), "quarantined": quarantined, "rewritten": rewritten,
            "lost_ranges": [g for g in gaps if g not in before.gaps], "after": after.summary()}


def _quarantine(directory: Path, segment: Path) -> str:
    folder = directory / "quarantine"
    folder.mkdir(exist_ok=True)
    target = folder / f"{segment.name}.{time.strftime('%Y%m%dT%H%M%S')}"
    shutil.copy2(segment, target)
    fsync_file(target)
    fsync_dir(folder)
    fsync_dir(directory)
    return str(target.relative_to(directory))


def _rewrite(segment: Path, data: bytes, frames: list[Frame]) -> None:
    temporary = segment.with_suffix(".repair")
    with open(temporary, "wb") as f:
        for frame in frames:
            f.write(data[frame.offset:frame.end])
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, segment)
    fsync_dir(segment.parent)


def _write_gaps(directory: Path, gaps: list[tuple[int, int]]) -> None:
    path = directory / GAPS_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"lost": sorted([list(g) for g in gaps])}, indent=1) + "\n")
    fsync_file(temporary)
    os.replace(temporary, path)
    fsync_dir(directory)
