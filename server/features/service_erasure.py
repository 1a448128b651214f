"""Erasure from a running server (the Admin Forget RPC): new batches are refused UNAVAILABLE
while it runs, the batches under way land and a snapshot being written finishes, then the data
directory is rebuilt without the shopper (erasure.forget) in a thread while reads go on from
the store as it was, and the service takes up the rebuilt directory in one step on the event
loop: its store, dedup index, log and key are the fresh ones from then on."""
from __future__ import annotations

import asyncio
import logging

from ..models.errors import FailedPrecondition, Unavailable
from . import lock

log = logging.getLogger("hanzo.server.features.service")

# what a service opened on the rebuilt directory hands over
_TAKEN = ("store", "dedup", "log", "applied_seq", "pseudonyms", "erased", "_since_snapshot", "_writer")


class OnlineErasure:
    """Mixin of FeatureService."""

    _erasing = False
    _erasure: asyncio.Task | None = None

    async def forget(self, merchant: str, user: str) -> dict:
        """Erase `user` of `merchant`; the receipt (erasure.forget). A caller that gives up
        (its deadline, a cancellation) leaves the erasure to finish: stopped between the
        rebuild and the take-up, the service would write on into the directory it replaced."""
        if self.redis is not None:
            raise FailedPrecondition("in Redis mode an erasure rebuilds Redis from every replica's log: stop the "
                                     "replicas and run `hanzo forget --redis-url URL --data-dir DIR ...` with each "
                                     "replica's data directory")
        if self._erasing:
            raise Unavailable("an erasure is running already; retry when it is done")
        if not self.is_open or self._closing:
            raise Unavailable("the feature store is opening or closing")
        self._erasing = True
        self._erasure = asyncio.get_running_loop().create_task(self._erase(merchant, user))
        self._erasure.add_done_callback(_said)
        return await asyncio.shield(self._erasure)

    async def erasure_settled(self) -> None:
        """Wait for an erasure under way to finish (a close must not run beside it)."""
        if self._erasure is not None and not self._erasure.done():
            await asyncio.wait([self._erasure])

    async def _erase(self, merchant: str, user: str) -> dict:
        try:
            while self._in_flight or self._next_commit < self._tickets:  # the batches under way land
                await asyncio.sleep(0.01)
            await self.background_settled()
            receipt, fresh = await asyncio.to_thread(self._rebuilt_without, merchant, user)
            if fresh is not None:
                self._take_up(fresh)
        finally:
            self._erasing = False
        log.info("shopper erased", extra={"events_removed": receipt["events_removed"],
                                          "seconds": receipt["seconds"]})
        return receipt

    def _rebuilt_without(self, merchant: str, user: str):
        from .erasure import forget

        receipt = forget(self.config, merchant, user)
        if not receipt["rewritten"]:  # nothing of theirs was held: the store is as it was
            return receipt, None
        fresh = type(self)(self.config)
        fresh.limits = self.limits
        fresh.open()
        return receipt, fresh

    def _take_up(self, fresh) -> None:
        old_log, old_writer = self.log, self._writer
        for name in _TAKEN:
            setattr(self, name, getattr(fresh, name))
        lock.release(self.config.data_dir)  # the fresh service's hold: this one keeps its own
        old_writer.shutdown(wait=False)
        old_log.close()  # its files went with the old directory


def _said(task: asyncio.Task) -> None:
    """An erasure whose caller had gone still says how it ended."""
    if not task.cancelled() and task.exception() is not None:
        log.error("erasure failed; the store is as it was", extra={"error": str(task.exception())[:300]})
