"""What a surface served, logged as events (recommendation_shown, search, order) batched into
the event log off the request path (every 50 ms or 500 events), so outcomes can be joined
back to what was served.

One background task per log is the only flusher: it sleeps until the oldest pending event is
`every_s` old or `batch` events wait, ingests everything pending, and stops when nothing is
left (the next record starts it again). Nothing ever waits on another flush, so no two
flushes can wait on each other.

Memory is bounded: at most `capacity` events wait. Beyond that the newest are dropped (the
ones waiting are older and nearer their turn, and the log keeps their order). A flush that
fails loses its batch; both are counted by event type in STATS (exported as Prometheus
counters by app/metrics.py) and logged at most once per `report_every_s` with counts only,
never an event's contents. `flush()` (the surfaces' close) drains what is pending.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from ..features.service import ERASED_REFUSED, FeatureService

log = logging.getLogger(__name__)


@dataclass
class ServedLogStats:
    """Process-wide counters of served events that never reached the event log, keyed by
    (event_type, reason): full (the pending buffer was full), flush_failed, closed (the
    feature store was not open), rejected (the event log refused the event)."""
    lost: Counter = field(default_factory=Counter)
    flush_failures: int = 0
    flushed: int = 0  # events handed to the feature service


STATS = ServedLogStats()


class ServedLog:
    def __init__(self, features: FeatureService, every_s: float = 0.05, batch: int = 500,
                 capacity: int = 10_000, report_every_s: float = 60.0) -> None:
        if capacity < batch:
            raise ValueError(f"served log capacity ({capacity}) must hold at least one batch ({batch})")
        self.features = features
        self.every_s = every_s
        self.batch = batch
        self.capacity = capacity
        self.report_every_s = report_every_s
        self._pending: list[dict] = []
        self._task: asyncio.Task | None = None  # the one flusher, while there is work
        self._wake: asyncio.Future | None = None  # set early when a batch fills or a drain asks
        self._draining = 0
        self._count = 0
        self._unreported: Counter = Counter()  # losses not yet logged, by reason
        self._reported_at = -float("inf")
        self._error = ""  # the latest failed flush's error, for the next report

    def now(self) -> int:
        """The store's clock (event time), not the wall clock: a replay of last year's traffic
        logs what it served in last year, where the outcomes are."""
        return self.features.store.watermark or int(time.time() * 1000)

    def auto_id(self, now: int) -> str:
        """A request id for calls that brought none: unique across restarts and replicas, so
        the log's dedup never takes two answers for one."""
        return f"auto-{now}-{uuid.uuid4().hex}"

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, event: dict) -> None:
        self._count += 1
        if len(self._pending) >= self.capacity:
            self._lose("full", [event])
            return
        self._pending.append(event)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._task.add_done_callback(self._ended)
        elif len(self._pending) >= self.batch:
            self._wake_up()

    async def flush(self) -> None:
        """Return once every event recorded before the call has been ingested (or counted lost)."""
        while self._task is not None:
            task = self._task
            self._draining += 1
            self._wake_up()
            try:
                await asyncio.shield(task)
            finally:
                self._draining -= 1
        self._report(force=True)

    # ------------------------------------------------------------------ the flusher

    def _wake_up(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            if len(self._pending) < self.batch and not self._draining:
                self._wake = loop.create_future()
                timer = loop.call_later(self.every_s, self._wake_up)
                try:
                    await self._wake
                finally:
                    timer.cancel()
                    self._wake = None
            pending, self._pending = self._pending, []
            await self._ingest(pending)
            self._report()

    async def _ingest(self, pending: list[dict]) -> None:
        if not self.features.is_open:
            self._lose("closed", pending)
            return
        try:
            result = await self.features.ingest(pending)
        except Exception as exc:  # the batch is lost; the next ones still go
            STATS.flush_failures += 1
            # the type and the OS's reason only: a message may quote an event
            self._error = f"{type(exc).__name__}: {exc.strerror}" if isinstance(exc, OSError) else type(exc).__name__
            self._lose("flush_failed", pending)
            return
        STATS.flushed += len(pending) - len(result.rejects)
        # what was served to a shopper erased under erasure_later_events = "refuse" is refused by design
        rejects = [r for r in result.rejects if r.reason != ERASED_REFUSED]
        if rejects:
            self._lose("rejected", [pending[r.index] for r in rejects])
            self._error = f"rejected at {rejects[0].field}"

    def _ended(self, task: asyncio.Task) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled() and task.exception() is not None:  # never expected: _ingest catches
            log.error("served log flusher failed", exc_info=task.exception())
        if self._pending and not task.cancelled():  # recorded as it ended: start again
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._task.add_done_callback(self._ended)

    # ------------------------------------------------------------------ losses

    def _lose(self, reason: str, events: list[dict]) -> None:
        for kind, n in Counter(e.get("event_type", "") for e in events).items():
            STATS.lost[(kind, reason)] += n
        self._unreported[reason] += len(events)
        if reason == "full":
            self._report()

    def _report(self, force: bool = False) -> None:
        """At most one warning per interval, with the counts since the last."""
        if not self._unreported:
            return
        now = time.monotonic()
        if not force and now - self._reported_at < self.report_every_s:
            return
        self._reported_at = now
        counts, self._unreported = dict(self._unreported), Counter()
        extra = {"lost": counts, "capacity": self.capacity}
        if "flush_failed" in counts or "rejected" in counts:
            extra["error"] = self._error
        log.warning("served events lost", extra=extra)
