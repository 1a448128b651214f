"""The feature service: ingestion (validate, deduplicate, append to the durable log, apply to
the online store), reads, snapshots and recovery. One instance per server process."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .dedup import DedupIndex, id_hashes
from ..models.errors import Unavailable
from ..models.limits import DEFAULT_LIMITS
from .erased import ErasedShoppers
from .retention import retained_since
from .pseudonyms import Pseudonyms, store_key
from .redis_durability import check_redis_durability, refuse_if_rebuilding, remember_replica_name
from .redis_layout import check_layout
from .redis_mode import redis_parts
from .tenancy import scope_record
from .events import EventError, check_record, format_timestamp
from .catalog_feed import CatalogFeed
from . import lock
from .formats import read_catalog
from .log import EventLog, LogBroken
from .log_frames import LogTooShort, follows, read_gaps
from .service_rebuilds import OnlineRebuilds
from .service_flight import BatchesInFlight
from .service_snapshots import SnapshotWriting
from .store import FeatureBlock, FeatureStore
from .store_config import FeatureStoreConfig

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000


@dataclass
class Reject:
    index: int
    event_id: str
    field: str
    reason: str


class StoreUnavailable(Unavailable):
    """The feature store's Redis did not answer."""


@dataclass
class IngestResult:
    accepted: int
    duplicates: int
    rejects: list[Reject]
    watermark: int


ERASED_REFUSED = ("this shopper was erased on request, and their later events are refused ([features] "
                  "erasure_later_events = \"refuse\")")


class FeatureService(BatchesInFlight, SnapshotWriting, OnlineRebuilds):
    finishing_erasure = False  # opened by redis_erasure, on a Redis it is rebuilding
    rebuilding = False  # re-applies a log (rebase.as_rebuild): erased shoppers are not refused

    def __init__(self, config: FeatureStoreConfig) -> None:
        self.config = config
        self.limits = DEFAULT_LIMITS  # the server's [limits] replace these
        horizon_ms = int(config.dedup_horizon_hours * HOUR_MS)
        self.redis = None
        self._redis_errors: tuple[type[BaseException], ...] = ()  # Redis mode: what "Redis is away" raises
        self.feed: CatalogFeed | None = None  # replicas only: nobody to share the catalogue with otherwise
        if config.backend == "redis":
            parts = redis_parts(config, horizon_ms)
            self.redis, self._redis_errors, self.store = parts.client, parts.errors, parts.store
            self.dedup, self.feed, self.replica = parts.dedup, parts.feed, parts.replica
        else:
            self.store = FeatureStore()
            self.dedup = DedupIndex(horizon_ms)
        self.log: EventLog | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hanzo-log")
        self._since_snapshot = 0
        # ids of batches between admission and landing (logged and applied, or given up), each
        # to the future its batch sets when it lands: a resend in this process waits for it
        self._in_flight: dict[int, asyncio.Future] = {}
        self._unlogged: set[int] = set()  # ids sent to the log whose append has not ended
        self._finished: dict = {}  # ticket -> an ended append waiting for an earlier ticket (service_flight)
        self._tasks: set[asyncio.Task] = set()  # tasks nobody awaits, kept referenced until they end
        self._closing = False
        self.applied_seq = 0  # records of the log applied to the store
        self.pseudonyms: Pseudonyms | None = None  # made at open (its key lives with the store)
        # told of every batch applied from now on, in log order (the experiments' outcome join)
        self.listeners: list[Callable[[list[dict]], None]] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_open(self) -> bool:
        return self.log is not None

    def open(self) -> None:
        """Load the newest snapshot, then replay the log after it. Blocking."""
        from hanzo.kernels import union_find, windows

        windows.prepare()
        union_find.prepare()
        started = time.monotonic()
        data = self.config.data_dir
        lock.acquire(data, "server or bulk ingest")
        try:
            self._open_locked(data, started)
        except BaseException:
            lock.release(data)
            raise

    def _open_locked(self, data: Path, started: float) -> None:
        key = store_key(self.config.pseudonym_key_file, data, self.redis)
        self.pseudonyms = Pseudonyms(key)
        self.erased = ErasedShoppers(key, data, self.redis)
        snapshot = self._load_snapshot()
        if not snapshot and self.config.catalog:
            self.store.load_catalog(read_catalog(self.config.catalog))
        event_log = EventLog(data / "log", fsync=self.config.fsync)
        self._check_log_reaches(event_log, snapshot)
        replayed = 0
        tail: set[str] = set()  # Redis mode: the ids of the log's tail past what Redis holds
        shared = self.store.applied(self.replica) if self.redis is not None else 0
        if self.redis is not None:
            if not self.finishing_erasure:
                refuse_if_rebuilding(self.redis)
            check_layout(self.redis, list(self.store._table_ids.values()))
            remember_replica_name(data, self.replica)
            self.store.sync_clock()
            check_redis_durability(self.redis)
        for first, records in event_log.replay(self.applied_seq):
            if first + len(records) <= shared:  # Redis already holds these: only the catalog catches up
                self.store.apply_catalog(records)
            else:
                if first < shared:
                    self.store.apply_catalog(records[:shared - first])
                    records, first = records[shared - first:], shared
                hashes = id_hashes([r["event_id"] for r in records])
                if self.redis is None:
                    self.dedup.check_and_add(hashes, np.array([r["timestamp"] for r in records], np.int64),
                                             self.store.watermark)
                else:
                    tail.update(str(h) for h in hashes.tolist())
                self._apply(records, first, hashes)
                replayed += len(records)
            self.applied_seq = first + len(records)
        self.log = event_log
        self.retained_since = retained_since(data)
        if self.config.retention_days > 0 and self.config.log_retention_days > 0:
            log.warning("retention_days is not enforced: log_retention_days drops log segments, and a store is "
                        "trimmed to its retention by rebuilding it from the whole log")
        if self.redis is not None and shared > self.applied_seq:
            log.warning("Redis holds this replica's batches past the end of its log: another server uses the same "
                        "replica name, or the data directory was restored from an older copy; those batches are "
                        "in Redis but not in this log", extra={"redis_position": shared, "log_end": self.applied_seq})
        if self.redis is not None:
            released = self.dedup.release_unlogged(tail)
            if released:
                log.warning("event ids marked seen but never logged (a stop between the two) unmarked; a resend "
                            "of them is taken", extra={"events": released})
        log.info("feature store open", extra={
            "snapshot": bool(snapshot), "replayed_events": replayed, "events": self.applied_seq,
            "seconds": round(time.monotonic() - started, 3), "watermark": format_timestamp(self.store.watermark)})

    def _check_log_reaches(self, event_log: EventLog, snapshot: bool) -> None:
        """The log must hold every event after the position the store starts from."""
        segments = event_log.segments()
        begins = int(segments[0].stem) if segments else self.applied_seq
        if begins > self.applied_seq and not follows(self.applied_seq, begins, read_gaps(event_log.directory)):
            raise LogTooShort(event_log.directory, begins, self.applied_seq,
                              "from its snapshot" if snapshot else self._no_snapshot_because)

    async def aclose(self, limit_s: float = 30.0) -> None:
        """Close from the event loop: no batch is taken from here on, the batches under way land
        (applied in log order, sent to Redis if it answers), a snapshot being written is awaited,
        then the blocking close runs in a thread while nothing else touches the store."""
        self._closing = True
        await self.rebuild_settled()
        deadline = asyncio.get_running_loop().time() + limit_s
        while (self._in_flight or self._next_commit < self._tickets) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if self.redis is not None and len(self.store.sends):
            try:
                await asyncio.wait_for(self.store.sends.send_async(), max(1.0, deadline - asyncio.get_running_loop().time()))
            except (asyncio.TimeoutError, *self._redis_errors):
                log.warning("closing with batches Redis has not got; the restart's replay sends them")
        await self.background_settled()
        await asyncio.to_thread(self.close)

    def close(self, snapshot: bool = True) -> None:
        """`snapshot=False`: no snapshot of the events since the last one (the next open replays
        them from the log)."""
        if self.log is None:
            return
        self._closing = True
        self._writer.shutdown(wait=True)
        self._finish_background()
        event_log, self.log = self.log, None
        event_log.close()
        if event_log.broken:
            log.warning("no snapshot at close: the log broke, and the restart must read it to know what it holds")
        elif self._since_snapshot and snapshot:
            self.snapshot()
        lock.release(self.config.data_dir)

    # ------------------------------------------------------------------ ingestion

    def admit(self, items: list[dict[str, Any] | EventError],
              merchant: str = "") -> tuple[list[dict], np.ndarray, list[Reject], int]:
        """Validation and deduplication: (new records, their id hashes, rejects, duplicates);
        the records' ids made `merchant`'s own (features/tenancy.py)."""
        records, rejects = self._screen(items, merchant)
        if not records:
            return [], np.zeros(0, np.uint64), rejects, 0
        if self.log is not None and self.log.broken:
            raise LogBroken(self.log.broken)
        return self._deduplicated(records, rejects)

    def _screen(self, items: list[dict[str, Any] | EventError], merchant: str = "") -> tuple[list[dict],
                                                                                             list[Reject]]:
        """Validation: the records that may be taken (their ids `merchant`'s), and the rejects."""
        now_ms = int(time.time() * 1000)
        max_future = int(self.config.max_future_seconds * 1000)
        floor = self.store.watermark - self.dedup.horizon_ms
        records, rejects = [], []
        for index, item in enumerate(items):
            if isinstance(item, EventError):
                rejects.append(Reject(index, getattr(item, "event_id", ""), item.field, item.reason))
                continue
            try:
                check_record(item, max_future, now_ms, self.limits)
            except EventError as exc:
                # an over-long id is echoed cut: an ack must never outgrow its batch
                rejects.append(Reject(index, str(item.get("event_id") or "")[:self.limits.max_id_chars], exc.field,
                                      exc.reason))
                continue
            if item["timestamp"] <= floor:
                rejects.append(Reject(index, item["event_id"], "timestamp",
                                      f"{format_timestamp(item['timestamp'])} is older than the store's horizon "
                                      f"({self.config.dedup_horizon_hours:g} h before its clock, "
                                      f"{format_timestamp(self.store.watermark)}): its duplicates could no longer be told "
                                      "apart"))
                continue
            event_id = item["event_id"]  # as the merchant sent it (scoping rewrites it)
            record = scope_record(item, merchant)
            if not self.rebuilding and self.erased.holds(record.get("user_id")):
                rejects.append(Reject(index, event_id, "user_id", ERASED_REFUSED))
                continue
            records.append(self.pseudonyms.record(record))
        return records, rejects


    def _deduplicated(self, records: list[dict], rejects: list[Reject]) -> tuple[list[dict], np.ndarray,
                                                                               list[Reject], int]:
        hashes = id_hashes([r["event_id"] for r in records])
        stamps = np.array([r["timestamp"] for r in records], np.int64)
        with self._refused_in_flight(records):
            self._refuse_in_flight(hashes)
            if self.redis is not None:
                self.store.sends.send()  # a batch logged while Redis was away goes first
            is_new = self.dedup.check_and_add(hashes, stamps, self.store.watermark)
        return self._new_only(records, hashes, is_new, rejects)

    async def _admit_async(self, items: list[dict[str, Any] | EventError],
                           merchant: str = "") -> tuple[list[dict], np.ndarray, list[Reject], int]:
        """admit on the event loop: a batch of this process that holds some of the ids is waited
        for (its ids are then duplicates, or free again), and Redis's round trips are awaited
        instead of blocking the loop."""
        records, rejects = self._screen(items, merchant)
        if not records:
            return [], np.zeros(0, np.uint64), rejects, 0
        hashes = id_hashes([r["event_id"] for r in records])
        stamps = np.array([r["timestamp"] for r in records], np.int64)
        await self._wait_for_in_flight(hashes)
        self._refuse_when_closed()
        with self._refused_in_flight(records):
            if self.redis is None:
                self._refuse_in_flight(hashes)
                is_new = self.dedup.check_and_add(hashes, stamps, self.store.watermark)
            else:
                is_new = await self._redis_check(hashes, stamps)
        return self._new_only(records, hashes, is_new, rejects)

    async def _redis_check(self, hashes: np.ndarray, stamps: np.ndarray) -> np.ndarray:
        """Redis's dedup script, its ids held in flight here while it runs (a resend in this
        process waits for the answer instead of meeting them pending in Redis)."""
        self.store.defer_sends = True  # serving: apply() queues, ingest() sends without blocking
        for _ in range(4):
            await self.store.sends.send_async()  # a batch logged while Redis was away goes first
            if not self._holds_in_flight(hashes):
                break
            await self._wait_for_in_flight(hashes)
        self._refuse_in_flight(hashes)
        checking = asyncio.get_running_loop().create_future()
        self._in_flight.update(dict.fromkeys(hashes.tolist(), checking))
        task = asyncio.ensure_future(self.dedup.check_and_add_async(hashes, stamps, self.store.watermark))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:  # the caller went: unmark what the script marked for it
            task.add_done_callback(lambda done: (self._unmark_abandoned(hashes, done),
                                                 self._release(hashes, checking)))
            raise
        finally:
            if not task.cancelled() and task.done():
                self._release(hashes, checking)

    def _refuse_when_closed(self) -> None:
        """No batch is taken once the log is broken (a resend must never be called a duplicate
        of a batch the log may not hold) or the store is closing."""
        if self.log is None or self._closing:
            raise Unavailable("the feature store is closing: the batch was not taken; retry (another replica, or "
                              "this one once it is back)")
        if self._erasing:
            raise Unavailable("an erasure is rebuilding the feature store: the batch was not taken; retry in a "
                              "moment")
        if self.log.broken:
            raise LogBroken(self.log.broken)

    def _unmark_abandoned(self, hashes: np.ndarray, done: asyncio.Future) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # Redis did not answer: the ids stay pending until this replica's restart
        is_new = done.result()
        if is_new.any():
            self._keep(self._forget_async(hashes[is_new]))

    @staticmethod
    def _new_only(records: list[dict], hashes: np.ndarray, is_new: np.ndarray,
                  rejects: list[Reject]) -> tuple[list[dict], np.ndarray, list[Reject], int]:
        duplicates = int(len(records) - is_new.sum())
        if duplicates:
            records = [r for r, new in zip(records, is_new) if new]
            hashes = hashes[is_new]
        return records, hashes, rejects, duplicates

    def _apply(self, records: list[dict], first_seq: int, hashes: np.ndarray | None = None) -> None:
        """Into the store; with Redis, the batch's ids, feed entry and log position go with it."""
        if self.redis is not None:
            ids = [str(h) for h in hashes.tolist()] if hashes is not None else None
            entry = self.feed.entry(records) if self.feed is not None else None
            self.store.applied_marker = (self.replica, first_seq + len(records), ids, entry)
        self.store.apply(records)

    def commit(self, records: list[dict], first_seq: int, background: bool = False,
               hashes: np.ndarray | None = None) -> None:
        """Apply records the log holds from `first_seq` on to the online store (`hashes`: their
        ids', pending in Redis until then); a snapshot when one is due (`background`: in a
        forked child, the caller being the event loop)."""
        self._apply(records, first_seq, hashes)
        self.applied_seq = first_seq + len(records)
        for listener in self.listeners:
            try:
                listener(records)
            except Exception:  # noqa: BLE001 - the batch is logged and applied whatever a listener does
                log.exception("an applied batch's listener failed")
        self._since_snapshot += len(records)
        if self._since_snapshot >= self.config.snapshot_every_events:
            if background:
                self._snapshot_in_background()
            else:
                self.snapshot()

    async def follow_catalog(self) -> None:
        """With replicas: apply the other replicas' catalogue changes as they come (runs until
        cancelled; the wait for the stream happens in a worker thread)."""
        if self.feed is None:
            return
        self.feed.check_trimmed()
        while True:
            try:
                batches, last = await asyncio.to_thread(self.feed.read, 1000)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: try again shortly, the position is unchanged
                log.exception("catalog feed read failed")
                await asyncio.sleep(1.0)
                continue
            for records in batches:
                self.store.apply_catalog(records)
            self.feed.position = last

    async def resend_unsent(self, every_s: float = 1.0, most_s: float = 10.0) -> None:
        """Redis mode, until cancelled: logged batches Redis has not got (it was away) are sent
        again with backoff, so they reach it even when no new batch comes to carry them."""
        wait = every_s
        while True:
            await asyncio.sleep(wait)
            if not len(self.store.sends):
                wait = every_s
                continue
            try:
                await self.store.sends.send_async()
                wait = every_s
            except self._redis_errors:
                wait = min(wait * 2, most_s)
            except Exception:  # noqa: BLE001 - a script error (a bug) must not end the retries
                log.exception("sending logged batches to Redis failed; tried again")
                wait = most_s

    async def ingest(self, items: list[dict[str, Any] | EventError], merchant: str = "") -> IngestResult:
        """One batch: acknowledged (returned) only after its events are in the log. `merchant`:
        whose events they are (their ids are kept as that merchant's: features/tenancy.py)."""
        with self._reachable("taking a batch in"):
            records, hashes, rejects, duplicates = await self._admit_async(items, merchant)
            if records:
                await self._append_and_commit(records, hashes)
        return IngestResult(len(records), duplicates, rejects, self.store.watermark)

    @contextlib.contextmanager
    def _reachable(self, doing: str) -> Iterator[None]:
        """Redis mode: Redis not answering becomes UNAVAILABLE naming it, never INTERNAL. A batch
        already in the log when it went is applied with the next one; its resend is a duplicate."""
        try:
            yield
        except self._redis_errors as exc:
            raise StoreUnavailable(f"the feature store's Redis did not answer while {doing} "
                                   f"({type(exc).__name__}: {str(exc)[:200]}); retry") from exc

    def ingest_blocking(self, items: list[dict[str, Any] | EventError], merchant: str = "") -> IngestResult:
        """The same, in the caller's thread (bulk loads without a server)."""
        with self._reachable("taking a batch in"):
            records, hashes, rejects, duplicates = self.admit(items, merchant)
            if records:
                try:
                    first = self.log.append(records)
                except BaseException as exc:
                    if not isinstance(exc, LogBroken):
                        self._forget(hashes)
                    raise
                self.commit(records, first, hashes=hashes)
                if self.redis is not None:
                    self.store.sends.send()
        return IngestResult(len(records), duplicates, rejects, self.store.watermark)

    # ------------------------------------------------------------------ reads

    async def network(self, orders: list[dict]) -> np.ndarray:
        """The fraud network's tallies for orders about to be applied (graph.READ_COLUMNS)."""
        with self._reachable("reading the fraud network"):
            return await self.store.graph.tallies_async(orders)

    async def read(self, entity: str, keys: list[str], names: list[str], as_of: int | None = None) -> FeatureBlock:
        """Features of `keys`; with Redis the round trip leaves the event loop free."""
        if self.redis is not None:
            with self._reachable("reading features"):
                return await self.store.read_async(entity, keys, names, as_of)
        return self.store.read(entity, keys, names, as_of)
