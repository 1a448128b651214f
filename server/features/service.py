"""The feature service: ingestion (validate, deduplicate, append to the durable log, apply to
the online store), reads, snapshots and recovery. One instance per server process."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .dedup import DedupIndex, id_hashes
from ..models.errors import Unavailable
from ..models.limits import DEFAULT_LIMITS
from .events import EventError, check_record, format_timestamp
from .catalog_feed import CatalogFeed
from . import lock
from .formats import read_catalog
from .log import EventLog
from . import snapshots
from .store import FeatureBlock, FeatureStore

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000


@dataclass
class FeatureStoreConfig:
    data_dir: Path = field(default_factory=lambda: Path("hanzo_data"))
    fsync: str = "always"  # always | interval | never
    dedup_horizon_hours: float = 31 * 24  # >= the longest window, so every late event that can count is deduplicated
    max_future_seconds: float = 300.0  # events stamped further ahead of the wall clock are rejected
    max_batch_events: int = 10_000
    snapshot_every_events: int = 1_000_000
    log_retention_days: float = 0.0  # > 0: drop log segments older than this once a snapshot covers them
    catalog: Path | None = None  # catalog.jsonl loaded at start (catalog_update events extend it)
    backend: str = "embedded"  # embedded | redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_ttl_days: float = 35.0  # expiry of sequences, latest values and spans in Redis
    replica: str = ""  # this server's name in Redis (its log's replay position); default: the data dir

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.backend not in ("embedded", "redis"):
            raise ValueError(f"backend must be embedded or redis, not {self.backend!r}")
        if self.catalog is not None:
            self.catalog = Path(self.catalog)


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


class FeatureService:
    def __init__(self, config: FeatureStoreConfig) -> None:
        self.config = config
        self.limits = DEFAULT_LIMITS  # the server's [limits] replace these
        horizon_ms = int(config.dedup_horizon_hours * HOUR_MS)
        self.redis = None
        self._redis_errors: tuple[type[BaseException], ...] = ()  # Redis mode: what "Redis is away" raises
        self.feed: CatalogFeed | None = None  # replicas only: nobody to share the catalogue with otherwise
        if config.backend == "redis":
            import redis

            from .redis_store import RedisDedup, RedisFeatureStore

            import redis.asyncio

            self.redis = redis.Redis.from_url(config.redis_url)
            self._redis_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
            self.store = RedisFeatureStore(self.redis, config.redis_ttl_days,
                                           async_client=redis.asyncio.Redis.from_url(config.redis_url))
            self.replica = config.replica or str(config.data_dir.resolve())
            self.dedup = RedisDedup(self.redis, horizon_ms, replica=self.replica)
            self.feed = CatalogFeed(self.redis, self.store.prefix, self.replica)
        else:
            self.store = FeatureStore()
            self.dedup = DedupIndex(horizon_ms)
        self.log: EventLog | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hanzo-log")
        self._since_snapshot = 0
        self.applied_seq = 0  # records of the log applied to the store

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
        snapshot = self._load_snapshot()
        if not snapshot and self.config.catalog:
            self.store.load_catalog(read_catalog(self.config.catalog))
        event_log = EventLog(data / "log", fsync=self.config.fsync)
        replayed = 0
        tail: set[str] = set()  # Redis mode: the ids of the log's tail past what Redis holds
        shared = self.store.applied(self.replica) if self.redis is not None else 0
        if self.redis is not None:
            self.store.sync_clock()
            _check_redis_durability(self.redis)
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
                self._apply(records, first)
                replayed += len(records)
            self.applied_seq = first + len(records)
        self.log = event_log
        if self.redis is not None:
            released = self.dedup.release_unlogged(tail)
            if released:
                log.warning("event ids marked seen but never logged (a stop between the two) unmarked; a resend "
                            "of them is taken", extra={"events": released})
        log.info("feature store open", extra={
            "snapshot": bool(snapshot), "replayed_events": replayed, "events": self.applied_seq,
            "seconds": round(time.monotonic() - started, 3), "watermark": format_timestamp(self.store.watermark)})

    def close(self) -> None:
        if self.log is None:
            return
        self._writer.shutdown(wait=True)
        event_log, self.log = self.log, None
        event_log.close()
        if self._since_snapshot:
            self.snapshot()
        lock.release(self.config.data_dir)

    # ------------------------------------------------------------------ ingestion

    def admit(self, items: list[dict[str, Any] | EventError]) -> tuple[list[dict], np.ndarray, list[Reject], int]:
        """Validation and deduplication: (new records, their id hashes, rejects, duplicates)."""
        now_ms = int(time.time() * 1000)
        max_future = int(self.config.max_future_seconds * 1000)
        floor = self.store.watermark - self.dedup.horizon_ms
        records, rejects = [], []
        for index, item in enumerate(items):
            if isinstance(item, EventError):
                rejects.append(Reject(index, "", item.field, item.reason))
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
                                      f"{format_timestamp(self.store.watermark)}): no window holds it"))
                continue
            records.append(item)
        if not records:
            return [], np.zeros(0, np.uint64), rejects, 0
        hashes = id_hashes([r["event_id"] for r in records])
        stamps = np.array([r["timestamp"] for r in records], np.int64)
        is_new = self.dedup.check_and_add(hashes, stamps, self.store.watermark)
        duplicates = int(len(records) - is_new.sum())
        if duplicates:
            records = [r for r, new in zip(records, is_new) if new]
            hashes = hashes[is_new]
        return records, hashes, rejects, duplicates

    def _apply(self, records: list[dict], first_seq: int) -> None:
        if self.redis is not None:
            self.store.applied_marker = (self.replica, first_seq + len(records))
        self.store.apply(records)

    def commit(self, records: list[dict], first_seq: int) -> None:
        """Apply records the log holds from `first_seq` on to the online store."""
        self._apply(records, first_seq)
        if self.feed is not None:
            self.feed.publish(records)
        self.applied_seq = first_seq + len(records)
        self._since_snapshot += len(records)
        if self._since_snapshot >= self.config.snapshot_every_events:
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

    async def ingest(self, items: list[dict[str, Any] | EventError]) -> IngestResult:
        """One batch: acknowledged (returned) only after its events are in the log."""
        with self._reachable("taking a batch in"):
            records, hashes, rejects, duplicates = self.admit(items)
            if records:
                try:
                    first = await asyncio.get_running_loop().run_in_executor(self._writer, self._log_batch, records,
                                                                             hashes)
                except BaseException:
                    self._forget(hashes)
                    raise
                self.commit(records, first)
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

    def _forget(self, hashes: np.ndarray) -> None:
        """Unmark a batch that did not reach the log, so its resend is taken (best effort: with
        Redis away the ids stay pending, and the next start unmarks them)."""
        try:
            self.dedup.forget(hashes, self.store.watermark)
        except self._redis_errors:
            log.warning("could not unmark a batch that was not logged; the next start will", exc_info=True)

    def _log_batch(self, records: list[dict], hashes: np.ndarray) -> int:
        """Into the log, then no longer pending in Redis's dedup (in the writer's thread)."""
        first = self.log.append(records)
        try:
            self.dedup.confirm(hashes)
        except Exception:  # logged all the same: the restart finds them pending and in the log, and keeps them
            log.warning("could not take a logged batch's ids off the pending set", exc_info=True)
        return first

    def ingest_blocking(self, items: list[dict[str, Any] | EventError]) -> IngestResult:
        """The same, in the caller's thread (bulk loads without a server)."""
        with self._reachable("taking a batch in"):
            records, hashes, rejects, duplicates = self.admit(items)
            if records:
                try:
                    first = self._log_batch(records, hashes)
                except BaseException:
                    self._forget(hashes)
                    raise
                self.commit(records, first)
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

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> Path:
        """Write the store and the dedup index as of `applied_seq`; drop older snapshots and,
        under a retention policy, the log segments the snapshot covers."""
        started = time.monotonic()
        dropped = self.store.evict()
        root = self.config.data_dir / "snapshots"
        arrays = {f"dedup.{k}": v for k, v in self.dedup.state().items()}
        if self.redis is None:  # with Redis the tables live there; the snapshot keeps the catalog
            for i, table in enumerate(self.store.tables):
                arrays.update({f"table{i}.{k}": v for k, v in table.arrays().items()})
            arrays.update({f"seen.{entity}": seen for entity, seen in self.store.last_seen.items()})
            arrays.update({f"real.{entity}": real for entity, real in self.store.real.items()})
        graph_state = None
        if not self.store.graph.shared:  # the fraud network, where this process holds it
            graph_state, graph_arrays = self.store.graph.state()
            arrays.update(graph_arrays)
        state = {"applied_seq": self.applied_seq, "watermark": self.store.watermark, "layout": self._layout(),
                 "entities": {name: index.keys for name, index in self.store.entities.items()},
                 "catalog": self.store.catalog.state(), "graph": graph_state,
                 "catalog_feed": self.feed.position if self.feed is not None else None}
        target = snapshots.write(root, self.applied_seq, arrays, state)
        self._since_snapshot = 0
        if self.config.log_retention_days > 0 and self.log is not None:
            self._apply_retention()
        log.info("snapshot", extra={"events": self.applied_seq, "seconds": round(time.monotonic() - started, 3),
                                    "evicted": dropped})
        return target

    def _apply_retention(self) -> None:
        """Drop segments entirely older than the retention (by event time) and covered by every
        kept snapshot (a start may fall back to the oldest)."""
        horizon = self.store.watermark - int(self.config.log_retention_days * 24 * HOUR_MS)
        needed = snapshots.oldest_kept_seq(self.config.data_dir / "snapshots")
        covered = 0
        for first, records in self.log.replay(0):
            if first + len(records) > needed or max(r["timestamp"] for r in records) > horizon:
                break
            covered = first + len(records)
        self.log.drop_segments_before(covered)

    def _layout(self) -> list:
        return [self.config.backend] + [[type(t).__name__, t.entity, {k: list(v.shape[1:]) for k, v in
                                                                      t.arrays().items()}] for t in self.store.tables]

    def _load_snapshot(self) -> bool:
        for path, state, arrays in snapshots.newest_readable(self.config.data_dir / "snapshots"):
            if state["layout"] != self._layout():
                log.warning("snapshot ignored: the feature definitions changed since it was written; replaying the "
                            "log", extra={"snapshot": path.name})
                return False
            if not self.store.graph.shared and not state.get("graph"):
                log.warning("snapshot ignored: it predates the fraud network; replaying the log",
                            extra={"snapshot": path.name})
                return False
            self._restore(state, arrays)
            return True
        return False

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Everything a snapshot read back whole holds, into the store."""
        if self.redis is None:
            self.dedup.restore({k: arrays[f"dedup.{k}"] for k in ("keys", "stamps")})
            for i, table in enumerate(self.store.tables):
                table.set_arrays({k: arrays[f"table{i}.{k}"] for k in table.arrays()})
            for entity in self.store.last_seen:
                self.store.last_seen[entity] = arrays[f"seen.{entity}"].copy()
            for entity in self.store.real:  # a snapshot from before: every row kept, as then
                name = f"real.{entity}"
                self.store.real[entity] = arrays[name].copy() if name in arrays else \
                    np.ones(len(state["entities"][entity]), dtype=np.uint8)
        if not self.store.graph.shared:
            self.store.graph.restore(state["graph"], {k: arrays[k] for k in ("graph.parent", "graph.stats",
                                                                              "graph.charged")})
        for name, keys in state["entities"].items():
            index = self.store.entities[name]
            index.keys = list(keys)
            index.rows = {key: row for row, key in enumerate(keys)}
        self.store.catalog.restore(state["catalog"])
        if self.feed is not None and state.get("catalog_feed"):
            self.feed.position = state["catalog_feed"]
        self.store.watermark = state["watermark"]
        self.applied_seq = state["applied_seq"]


def _check_redis_durability(client) -> None:
    """What Redis mode relies on across a crash of Redis itself: an append-only file synced on
    every write. Anything less can lose acknowledged applies and seen-marks; said once, at open."""
    try:
        settings = {**client.config_get("appendonly"), **client.config_get("appendfsync")}
    except Exception:  # a managed Redis may refuse CONFIG: nothing to check against
        return
    decoded = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
               for k, v in settings.items()}
    if decoded.get("appendonly") != "yes" or decoded.get("appendfsync") != "always":
        log.warning("Redis may lose acknowledged events if it crashes: exactly-once across a Redis crash needs "
                    "appendonly yes and appendfsync always", extra={"redis": decoded})
