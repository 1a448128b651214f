"""What a surface served, logged as events (recommendation_shown, search) batched into the
event log off the request path (every 50 ms or 500 events), so outcomes can be joined back to
what was served."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid

from ..features.service import FeatureService

log = logging.getLogger(__name__)


class ServedLog:
    def __init__(self, features: FeatureService, every_s: float = 0.05, batch: int = 500) -> None:
        self.features = features
        self.every_s = every_s
        self.batch = batch
        self._pending: list[dict] = []
        self._task: asyncio.Task | None = None
        self._flushes: set[asyncio.Task] = set()  # held so a running flush is never collected
        self._count = 0

    def now(self) -> int:
        """The store's clock (event time), not the wall clock: a replay of last year's traffic
        logs what it served in last year, where the outcomes are."""
        return self.features.store.watermark or int(time.time() * 1000)

    def auto_id(self, now: int) -> str:
        """A request id for calls that brought none: unique across restarts and replicas, so
        the log's dedup never takes two answers for one."""
        return f"auto-{now}-{uuid.uuid4().hex}"

    def record(self, event: dict) -> None:
        self._count += 1
        self._pending.append(event)
        if len(self._pending) >= self.batch:
            task = asyncio.get_running_loop().create_task(self.flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        elif self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(self.every_s)
        await self.flush()

    async def flush(self) -> None:
        if self._flushes:
            await asyncio.gather(*[t for t in self._flushes if t is not asyncio.current_task()])
        pending, self._pending = self._pending, []
        if pending and self.features.is_open:
            result = await self.features.ingest(pending)
            if result.rejects:
                log.warning("served events rejected", extra={"rejects": len(result.rejects),
                                                            "first": result.rejects[0].reason})
