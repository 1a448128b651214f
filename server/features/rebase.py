"""A store's whole history moved forward in time: every event of its log re-applied, in log
order, `delta_ms` later, into a fresh data directory that then replaces the old one.

For a demonstration's simulated history only (a shop's real events keep their times): a demo
built days ago and started again would otherwise find its windows empty as soon as a call
stamped now moves the store's clock to today."""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

from . import lock
from ..models.limits import FieldLimits
from .log import replay_log
from .service import FeatureService, FeatureStoreConfig

log = logging.getLogger(__name__)

APPENDED_FILES = ("audit.jsonl",)  # written beside the log while a server runs


def history_end(data_dir: Path) -> int | None:
    """The newest event time (ms) in a data directory's log; None for an empty log."""
    newest = None
    for _, records in replay_log(Path(data_dir) / "log"):
        last = max(r["timestamp"] for r in records)
        newest = last if newest is None else max(newest, last)
    return newest


def log_is_whole(data_dir: Path) -> bool:
    """Whether the log still starts at its first event (retention has dropped nothing)."""
    segments = sorted((Path(data_dir) / "log").glob("*.log"))
    return bool(segments) and int(segments[0].stem) == 0


def rebase_history(config: FeatureStoreConfig, delta_ms: int, batch: int = 5000) -> int:
    """Move the history of `config.data_dir` `delta_ms` later; returns the events re-applied.
    Crash-safe: the new directory is built beside the old and swapped in by renames, and
    `recover_rebase` finishes or undoes an interrupted swap."""
    data_dir = Path(config.data_dir)
    lock.acquire(data_dir, "server")
    try:
        return _rebase(config, data_dir, delta_ms, batch)
    finally:
        lock.release(data_dir)


def _rebase(config: FeatureStoreConfig, data_dir: Path, delta_ms: int, batch: int) -> int:
    events = rebuild(config, data_dir, lambda records: [{**r, "timestamp": r["timestamp"] + delta_ms} for r in records],
                     "moved", batch)
    log.info("history moved forward", extra={"data_dir": str(data_dir), "events": events,
                                             "hours": round(delta_ms / 3_600_000, 2)})
    return events


def rebuild(config: FeatureStoreConfig, data_dir: Path, change: Callable[[list[dict]], list[dict]], what: str,
            batch: int = 5000, strict: bool = False) -> int:
    """Re-apply every event of the log, as `change` makes each batch of them, into a fresh data
    directory that then replaces `data_dir` (held locked by the caller): a new log, snapshot and
    dedup index; the old files are deleted. Returns the events re-applied. `strict`: an event
    the fresh store refuses stops the rebuild before anything is swapped."""
    work = Rebuild.fresh(config, data_dir, change, what, batch, strict)
    try:
        work.read()
    except BaseException:
        work.abandon()
        raise
    return work.finish()


class Rebuild:
    """rebuild() in steps, for a log that a running server goes on appending to: `read` re-applies
    the log up to a position (repeatable, each time from where the last stopped), `finish`
    swaps the fresh directory in once the caller has stopped the appends and read the rest.
    `service` is the fresh store, open on the directory beside `data_dir` (staging_dir)."""

    def __init__(self, data_dir: Path, service: FeatureService, change: Callable[[list[dict]], list[dict]],
                 position: int = 0, batch: int = 5000, strict: bool = False) -> None:
        self.data_dir, self.service, self.change, self.batch, self.strict = data_dir, service, change, batch, strict
        self.staging = staging_dir(data_dir)
        self.position = position  # the old log's events read so far
        self.events = 0  # re-applied by this Rebuild
        self._sealed = False

    @classmethod
    def fresh(cls, config: FeatureStoreConfig, data_dir: Path, change: Callable[[list[dict]], list[dict]],
              what: str, batch: int = 5000, strict: bool = False) -> "Rebuild":
        """From the log's first event, into a new directory beside `data_dir`."""
        if config.backend != "embedded":
            raise ValueError(f"only an embedded store's history can be {what} (Redis holds the tables of every "
                             f"replica)")
        if not log_is_whole(data_dir):
            raise ValueError(f"{data_dir}: the log no longer starts at its first event (log retention dropped "
                             f"segments), so its history cannot be rebuilt from it")
        check_swappable(data_dir)
        staging = staging_dir(data_dir)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in os.listdir(data_dir):  # what lives beside the log and snapshots: the key first of all
            if name not in ("log", "snapshots") and (data_dir / name).is_file():
                shutil.copy2(data_dir / name, staging / name)
        service = FeatureService(dataclasses.replace(config, data_dir=staging, fsync="never",
                                                     max_future_seconds=10 ** 10, log_retention_days=0.0))
        as_rebuild(service)
        service.open()
        return cls(data_dir, service, change, batch=batch, strict=strict)

    def read(self, until: int | None = None) -> int:
        """Re-apply the log's events from where the last call stopped up to position `until`
        (None: as far as it is written); returns the position reached."""
        for first, records in replay_log(self.data_dir / "log", self.position):
            if until is not None:
                if first >= until:
                    break
                records = records[:until - first]
            for start in range(0, len(records), self.batch):
                self._apply(records[start:start + self.batch])
            self.position = first + len(records)
        return self.position

    def _apply(self, records: list[dict]) -> None:
        chunk = self.change(records)
        if not chunk:
            return
        result = self.service.ingest_blocking(chunk)
        self.events += result.accepted
        if self.strict and (result.rejects or result.duplicates):
            raise ValueError(f"{self.data_dir}: the rebuild refused {len(result.rejects)} and called "
                             f"{result.duplicates} duplicates of the events it must keep (first: "
                             f"{result.rejects[0].reason if result.rejects else 'a duplicate'}); nothing was "
                             f"changed")

    def seal(self) -> None:
        """A snapshot of what is re-applied so far, so that `finish` need not write one: the
        few events read after it are replayed from the new log by whoever opens it."""
        self.service.snapshot()
        self._sealed = True

    def finish(self) -> int:
        """Swap the fresh directory in (nothing may append to the old log any more); returns
        the events re-applied."""
        self.close()
        swap_in(self.data_dir)
        return self.events

    def close(self) -> None:
        """The fresh directory complete (its store closed), for swap_in."""
        self._close(snapshot=not self._sealed)
        os.sync()

    def abandon(self) -> None:
        """Leave the store as it was."""
        self._close(snapshot=False)
        shutil.rmtree(self.staging, ignore_errors=True)

    def _close(self, snapshot: bool = True) -> None:
        if self.service.is_open:
            self.service.close(snapshot)
        lock.lock_file(self.staging).unlink(missing_ok=True)  # nobody else ever opens the staging copy


# The events of a log were checked when they were taken; scoped to a merchant, their ids are
# longer than the caller sent, so a rebuild must not check them against the caller's limits.
REBUILD_LIMITS = FieldLimits(**{name: 10 ** 9 for name in (f.name for f in dataclasses.fields(FieldLimits))})


def as_rebuild(service: FeatureService) -> FeatureService:
    """A service that re-applies a log: no field limits, and an erased shopper's events (which
    the rebuild's own filter removes, or which an unfinished erasure left) are not refused."""
    service.limits = REBUILD_LIMITS
    service.rebuilding = True
    return service


def staging_dir(data_dir: Path) -> Path:
    """Where a rebuild of `data_dir` is made."""
    return _beside(data_dir, "rebase")


def swap_in(data_dir: Path, keep_old: bool = False) -> Path:
    """The rebuilt directory beside `data_dir` (Rebuild.close) takes its place; the old one is
    deleted, or with `keep_old` left for the caller to delete (a running server, once it has
    let go of its files: a start deletes it too). Returns where the old one went."""
    staging, old = staging_dir(data_dir), _beside(data_dir, "before-rebase")
    with lock.SWAP:  # what was appended beside the log meanwhile (the audit log) comes along
        for name in APPENDED_FILES:
            if (data_dir / name).is_file():
                shutil.copy2(data_dir / name, staging / name)
        os.rename(data_dir, old)
        os.rename(staging, data_dir)
    if not keep_old:
        shutil.rmtree(old)
    return old


def check_swappable(data_dir: Path) -> None:
    """A rebuild swaps directories by renaming them: a data directory that is a symbolic link
    or a mount point cannot be swapped so (the link, not the data, would move)."""
    if Path(data_dir).is_symlink() or os.path.ismount(data_dir):
        raise ValueError(f"{data_dir} is a symbolic link or a mount point, and a rebuild (erasure, retention) "
                         f"swaps the data directory by renames: point data_dir at a directory inside it")


def recover_rebase(data_dir: Path) -> None:
    """After a crash inside rebase_history: keep the new directory if it was swapped in, else
    the old one; remove the leftovers."""
    data_dir = Path(data_dir)
    staging, old = _beside(data_dir, "rebase"), _beside(data_dir, "before-rebase")
    if old.exists() and not data_dir.exists():
        os.rename(staging if staging.exists() else old, data_dir)
    shutil.rmtree(staging, ignore_errors=True)
    lock.lock_file(staging).unlink(missing_ok=True)  # a rebuild's, killed with its server
    shutil.rmtree(old, ignore_errors=True)


def _beside(data_dir: Path, what: str) -> Path:
    return data_dir.with_name(f".{data_dir.name}.{what}")
