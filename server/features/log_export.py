"""A store's event log as a training set: every event its log holds, in time order, written
as canonical JSON lines, the form `hanzo train` reads. Read-only (log.replay_log), so it runs
beside a server that is still writing (a frame not yet whole is not read); what an erasure or
a retention pass removed is not in the log, so no retrained model learns from it."""
from __future__ import annotations

from pathlib import Path

from .formats import write_records
from .log import replay_log
from .log_repair import log_directory


def export_events(data_dirs: list[Path], out: Path) -> int:
    """The events of every data directory (replicas of one Redis-mode store, or one store),
    merged in time order into `out` (.jsonl or .jsonl.gz); returns how many."""
    records = []
    for data_dir in data_dirs:
        for _, batch in replay_log(log_directory(data_dir)):
            records.extend(batch)
    records.sort(key=lambda r: r["timestamp"])
    return write_records(out, records)
