"""The feature service's snapshots: written in the calling thread (bulk loads, close) or, while
serving, by a forked child (snapshot_child) so requests keep their latency; log retention
behind them; and loading the newest readable one at start."""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import snapshot_child, snapshots
from .log import replay_log

log = logging.getLogger("hanzo.server.features.service")

HOUR_MS = 3_600_000


class SnapshotWriting:
    """Part of FeatureService (its config, store, dedup, log, feed and applied_seq)."""

    _child: snapshot_child.SnapshotChild | None = None  # a background snapshot being written
    _child_task: asyncio.Task | None = None
    _fork_due = False  # a fork is scheduled on the event loop
    _no_snapshot_because = "no snapshot reads back"  # why a start replays from the beginning

    def snapshot(self) -> Path | None:
        """Write the store and the dedup index as of `applied_seq` in this thread (bulk loads,
        close); drop older snapshots and, under a retention policy, the log segments the
        snapshot covers."""
        self._finish_background()
        if self.redis is not None and len(self.store.sends):
            try:
                self.store.sends.send()
            except self._redis_errors:
                log.warning("no snapshot: Redis has not got every logged batch, and a snapshot would claim it had; "
                            "the restart replays them")
                return None
        started = time.monotonic()
        dropped = self.store.evict()
        target = snapshots.write(self.config.data_dir / "snapshots", self.applied_seq, *self._snapshot_contents())
        self._since_snapshot = 0
        if self.config.log_retention_days > 0 and self.log is not None:
            self.log.drop_segments_before(self._retention_covered())
        log.info("snapshot", extra={"events": self.applied_seq, "seconds": round(time.monotonic() - started, 3),
                                    "evicted": dropped})
        return target

    def _snapshot_in_background(self) -> None:
        """Serving: the snapshot is written by a forked child (snapshot_child) while this
        process goes on; one at a time, the next due once as many events again have come. The
        fork comes in a callback of its own, after the requests already waiting on the event
        loop, so they wait out the batch that made it due or the fork, never both."""
        if self._child is not None or self._fork_due:
            return
        self._fork_due = True
        asyncio.get_running_loop().call_soon(self._fork_snapshot)

    def _fork_snapshot(self) -> None:
        self._fork_due = False
        if self._child is not None or self.log is None or self._closing or self.log.broken:
            return  # (a broken log: ids of a batch it may not hold are marked; only a restart may snapshot)
        if self.rebuild_running:
            return  # its directory is on its way out, and a fork beside the rebuild's thread copies it mid-step
        if self.redis is not None and len(self.store.sends):
            return  # Redis has not got every logged batch: a snapshot now would claim it had (retried later)
        if self.redis is None:
            dropped = self.store.evict()
        else:  # Redis's eviction is round trips: in a thread, never on the event loop
            dropped = {}
            self._keep(self._evict_off_the_loop())
        self._since_snapshot = 0
        try:
            child = snapshot_child.start(self._write_in_child, self.applied_seq)
        except OSError:
            log.exception("could not fork the snapshot writer; it is tried again after as many events again")
            return
        self._child = child
        self._child_task = asyncio.get_running_loop().create_task(self._await_child(child, dropped))

    async def _evict_off_the_loop(self) -> None:
        try:
            dropped = await asyncio.to_thread(self.store.evict)
        except self._redis_errors:
            log.warning("eviction skipped: Redis did not answer; tried again with the next snapshot")
            return
        log.info("evicted", extra={"evicted": dropped})

    def _write_in_child(self) -> dict[str, Any]:
        started = time.monotonic()
        if self.redis is None and self._unlogged:  # marked seen, not logged yet: they may never be
            self.dedup.forget(np.fromiter(self._unlogged, np.uint64, len(self._unlogged)), self.store.watermark)
        target = snapshots.write(self.config.data_dir / "snapshots", self.applied_seq, *self._snapshot_contents())
        covered = self._retention_covered() if self.config.log_retention_days > 0 else 0
        return {"snapshot": target.name, "covered": covered, "seconds": round(time.monotonic() - started, 3)}

    async def _await_child(self, child: snapshot_child.SnapshotChild, dropped: dict) -> None:
        try:
            report = await asyncio.to_thread(child.wait)
        except snapshot_child.SnapshotFailed as exc:
            log.error("background snapshot failed; the log still holds everything, the next one is tried after "
                      "as many events again", extra={"error": str(exc)[:500]})
            return
        finally:
            self._child = None
        if report["covered"] and self.log is not None and not self._closing:
            await asyncio.get_running_loop().run_in_executor(self._writer, self.log.drop_segments_before,
                                                             report["covered"])
        log.info("snapshot", extra={"events": child.seq, "seconds": report["seconds"], "evicted": dropped,
                                    "paused_ms": round(child.fork_seconds * 1000, 2), "background": True})
        self.retain_if_due()

    async def background_settled(self) -> None:
        """Return once no background snapshot is due or being written (its outcome handled)."""
        while self._fork_due:
            await asyncio.sleep(0)
        while self._child_task is not None and not self._child_task.done():
            await asyncio.shield(self._child_task)

    def _finish_background(self) -> None:
        """Wait out a background snapshot (close, or a snapshot asked for in this thread)."""
        child, self._child = self._child, None
        if child is None:
            return
        try:
            child.wait()
        except snapshot_child.SnapshotFailed as exc:
            log.error("background snapshot failed", extra={"error": str(exc)[:500]})

    def _snapshot_contents(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
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
        return arrays, state

    def _retention_covered(self) -> int:
        """The log position before which every segment is entirely older than the retention (by
        event time) and covered by every kept snapshot (a start may fall back to the oldest).
        Reads the log as another process would, so a forked child can run it."""
        horizon = self.store.watermark - int(self.config.log_retention_days * 24 * HOUR_MS)
        needed = snapshots.oldest_kept_seq(self.config.data_dir / "snapshots")
        covered = 0
        for first, records in replay_log(self.config.data_dir / "log", 0):
            if first + len(records) > needed or max(r["timestamp"] for r in records) > horizon:
                break
            covered = first + len(records)
        return covered

    def _layout(self) -> list:
        return [self.config.backend] + [[type(t).__name__, t.entity, {k: list(v.shape[1:]) for k, v in
                                                                      t.arrays().items()}] for t in self.store.tables]

    def _load_snapshot(self) -> bool:
        for path, state, arrays in snapshots.newest_readable(self.config.data_dir / "snapshots"):
            if state["layout"] != self._layout():
                log.warning("snapshot ignored: the feature definitions changed since it was written; replaying the "
                            "log", extra={"snapshot": path.name})
                self._no_snapshot_because = "its snapshot was ignored: the feature definitions changed since"
                return False
            if not self.store.graph.shared and not state.get("graph"):
                log.warning("snapshot ignored: it predates the fraud network; replaying the log",
                            extra={"snapshot": path.name})
                self._no_snapshot_because = "its snapshot was ignored: it predates the fraud network"
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
