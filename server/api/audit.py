"""The audit log of admin actions: who (the credential's name, or who called without one and
from where), what (the method and its target), when, and the result, a JSON line each in a file
beside the event log (`hanzo audit` prints it). Refused attempts are recorded too.

Lines are written and fsynced by a thread of their own, in order, so an admin call never waits
on the disk; the queue is bounded, and what overflows it is counted in the next line written
rather than held in memory."""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ..features.lock import SWAP

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
FIELD_CHARS = 200  # a caller-chosen value (a model name) is cut to this in a record


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    def __init__(self, path: Path, wait_for_directory: bool = False) -> None:
        self.path = Path(path)
        # The default log lives in the store's data directory, which a first start creates whole
        # at the end of its build (an existing one would be kept in place of the demo's): lines
        # wait until it exists, or the server stops.
        self.wait_for_directory = wait_for_directory
        self._queue: queue.Queue = queue.Queue(QUEUE_LIMIT)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="hanzo-audit", daemon=True)
        self._thread.start()

    def record(self, who: str, what: str, result: str, **detail: object) -> None:
        """Queue one line (never blocks: a full queue counts the line as dropped)."""
        entry = {"time": now_iso(), "who": who[:FIELD_CHARS], "what": what[:FIELD_CHARS], "result": result}
        entry.update({k: (v[:FIELD_CHARS] if isinstance(v, str) else v) for k, v in detail.items()})
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        pending: list[dict] = []
        while True:
            try:
                batch = [self._queue.get(timeout=0.5 if pending else None)]
            except queue.Empty:
                batch = []
            while True:  # what has queued meanwhile goes out under the same fsync
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            for entry in batch:
                if entry is not None and len(pending) < QUEUE_LIMIT:
                    pending.append(entry)
                elif entry is not None:
                    self.dropped += 1
            try:
                if pending and (not self.wait_for_directory or self.path.parent.is_dir()):
                    self._write(pending)
                    pending = []
                elif pending and stop:  # stopped before the store's directory was made (a first start
                    # cut short): making it now would pass for a store; the lines go to the log
                    for entry in pending:
                        log.warning("audit record (no data directory to write it in)", extra={"audit": entry})
                    pending = []
            except OSError as exc:  # a full or failing disk must not stop the server; it is said
                log.error("audit log write failed", extra={"path": str(self.path), "error": str(exc),
                                                           "lines": len(pending)})
                pending = []
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def _write(self, entries: list[dict]) -> None:
        if not entries:
            return
        if self.dropped:
            entries.insert(0, {"time": now_iso(), "who": "hanzo", "what": "audit queue overflow",
                               "result": "DROPPED", "lines": self.dropped})
            self.dropped = 0
        # opened for each batch: a data directory swapped under it (a demo history moved forward,
        # which carries the file across) never leaves the log writing into the one removed
        with SWAP:  # never into a data directory on its way out (features/rebase.py)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries))
                out.flush()
                os.fsync(out.fileno())


def read(path: Path) -> Iterator[dict]:
    """The records of an audit file, oldest first; a torn last line (a crash mid-write) is skipped."""
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                yield json.loads(line)
            except ValueError:
                continue
