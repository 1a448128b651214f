"""Erasure from a running server (the Admin Forget RPC), which goes on taking events: the data
directory is rebuilt without the shopper (erasure.Erasure) by a child process at the lowest CPU
priority (erasure_child) while reads and writes go on in the store as it was, catching up with
the log as it grows; only for the last stretch are new batches refused UNAVAILABLE: the
batches under way land, a snapshot being written finishes, the rest of the log is re-applied,
the rebuilt directory is swapped in, and the service takes it up in one step on the event loop
(its store, dedup index, log and key are the fresh ones from then on). No snapshot is forked
while the rebuild runs."""
from __future__ import annotations

import asyncio
import logging

from ..models.errors import FailedPrecondition, Unavailable
from . import lock
from .erasure_child import ChildFailed, ErasureChild
from .tenancy import scoped

log = logging.getLogger("hanzo.server.features.service")

# the log may run this far ahead of the rebuild when the last stretch begins
CATCH_UP_EVENTS = 20_000
# what a service opened on the rebuilt directory hands over
_TAKEN = ("store", "dedup", "log", "applied_seq", "pseudonyms", "erased", "_since_snapshot", "_writer")


class OnlineErasure:
    """Mixin of FeatureService."""

    _erasing = False
    _erasure: asyncio.Task | None = None

    async def forget(self, merchant: str, user: str) -> dict:
        """Erase `user` of `merchant`; the receipt (erasure.Erasure). A caller that gives up
        (its deadline, a cancellation) leaves the erasure to finish: stopped between the
        rebuild and the take-up, the service would write on into the directory it replaced."""
        if self.redis is not None:
            raise FailedPrecondition("in Redis mode an erasure rebuilds Redis from every replica's log: stop the "
                                     "replicas and run `hanzo forget --redis-url URL --data-dir DIR ...` with each "
                                     "replica's data directory")
        if self.erasure_running:
            raise Unavailable("an erasure is running already; retry when it is done")
        if not self.is_open or self._closing:
            raise Unavailable("the feature store is opening or closing")
        if not user:
            raise ValueError("name the shopper to forget (user_id)")
        self._erasure = asyncio.get_running_loop().create_task(self._erase(merchant, user))
        self._erasure.add_done_callback(_said)
        return await asyncio.shield(self._erasure)

    @property
    def erasure_running(self) -> bool:
        return self._erasure is not None and not self._erasure.done()

    async def erasure_settled(self) -> None:
        """Wait for an erasure under way to finish (a close must not run beside it)."""
        if self.erasure_running:
            await asyncio.wait([self._erasure])

    async def _erase(self, merchant: str, user: str) -> dict:
        if self.config.erasure_later_events == "refuse" and not self.erased.holds(scoped(merchant, user)):
            self.erased.add(scoped(merchant, user))  # refused from now on, by this service too
        child = await ErasureChild.start(self.config, merchant, user)
        try:
            if await child.begin():
                reached = await self._catch_up(child, 0)
                await child.seal()  # the rebuilt store's snapshot, written before the pause
                await self._catch_up(child, reached)
                self._erasing = True  # the last stretch: new batches wait outside
                while self._in_flight or self._next_commit < self._tickets:  # the batches under way land
                    await asyncio.sleep(0.01)
                await self.background_settled()
                await child.read(self.applied_seq)
                receipt = await child.close()
                self._take_up(await asyncio.to_thread(self._swapped))
            else:
                receipt = await child.close()  # nothing of theirs was held: the store is as it was
        except ChildFailed as exc:
            await child.abandon()
            raise Unavailable(f"the erasure did not finish ({exc}); the store is as it was: retry") from None
        except BaseException:
            await child.abandon()
            raise
        finally:
            self._erasing = False
        log.info("shopper erased", extra={"events_removed": receipt["events_removed"],
                                          "seconds": receipt["seconds"]})
        return receipt

    async def _catch_up(self, child: ErasureChild, reached: int) -> int:
        """Re-apply the log until the rebuild is less than CATCH_UP_EVENTS behind it."""
        while self.applied_seq - reached > CATCH_UP_EVENTS and not self._closing:
            reached = await child.read(self.applied_seq)
        return reached

    def _swapped(self):
        from .rebase import swap_in  # (rebase builds FeatureServices: a module above this one)

        swap_in(self.config.data_dir)
        fresh = type(self)(self.config)
        fresh.limits = self.limits
        fresh.open()
        return fresh

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
