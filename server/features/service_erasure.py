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
import dataclasses
import logging
import time
from collections import Counter
from typing import Awaitable, Callable

from ..models.errors import FailedPrecondition, Unavailable
from . import lock
from .erasure_records import Shopper, Without, receipt
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
        started = time.monotonic()
        if self.config.erasure_later_events == "refuse" and not self.erased.holds(scoped(merchant, user)):
            self.erased.add(scoped(merchant, user))  # refused from now on, by this service too
        try:
            closed = await self._rebuilt_in_child(merchant, user)
        except ChildFailed as exc:
            raise Unavailable(f"the erasure did not finish ({exc}); the store is as it was: retry") from None
        if closed["state"]["position"] == 0 and not closed["receipt"]["rewritten"]:
            return closed["receipt"]  # nothing of theirs was held: the store is as it was
        work, shopper, removed = await asyncio.to_thread(self._open_rebuilt, closed["state"])
        try:
            await self._catch_up(lambda until: asyncio.to_thread(work.read, until), work.position)
            self._erasing = True  # the last stretch: new batches wait outside
            paused = time.monotonic()
            while self._in_flight or self._next_commit < self._tickets:  # the batches under way land
                await asyncio.sleep(0.01)
            await self.background_settled()
            await asyncio.to_thread(work.read, self.applied_seq)
            await asyncio.to_thread(self._swap_in, work.service)
            self._take_up(work.service)
            paused = time.monotonic() - paused
        except BaseException:
            await asyncio.to_thread(work.abandon)
            raise
        finally:
            self._erasing = False
        kept = closed["state"]["events"] + work.events
        out = receipt(self.config, merchant, user, removed, shopper, kept, started)
        out["ingestion_paused_seconds"] = round(paused, 3)  # the last stretch
        log.info("shopper erased", extra={"events_removed": out["events_removed"], "seconds": out["seconds"],
                                          "ingestion_paused_seconds": out["ingestion_paused_seconds"]})
        return out

    async def _rebuilt_in_child(self, merchant: str, user: str) -> dict:
        """The child's rebuild up to a few thousand events short of the log's end, sealed with a
        snapshot and closed: what erasure_child's "close" answers."""
        child = await ErasureChild.start(self.config, merchant, user)
        try:
            if await child.begin():
                reached = await self._catch_up(child.read, 0)
                await child.seal()  # the rebuilt store's snapshot, written before the pause
                await self._catch_up(child.read, reached)
            return await child.close()
        except BaseException:
            await child.abandon()
            raise

    async def _catch_up(self, read: Callable[[int], Awaitable[int]], reached: int) -> int:
        """Re-apply the log until the rebuild is less than CATCH_UP_EVENTS behind it."""
        while self.applied_seq - reached > CATCH_UP_EVENTS and not self._closing:
            reached = await read(self.applied_seq)
        return reached

    def _open_rebuilt(self, state: dict):
        """The child's rebuilt store opened here, to take the rest of the log: (its Rebuild,
        the shopper, what went so far)."""
        from .rebase import Rebuild, staging_dir  # (rebase builds FeatureServices: a module above this one)

        shopper = Shopper(state["user"], set(state["sessions"]), set(state["orders"]), state["held"], state["seen"])
        removed = Counter(state["removed"])
        fresh = type(self)(dataclasses.replace(self.config, data_dir=staging_dir(self.config.data_dir)))
        fresh.limits = self.limits
        fresh.open()
        without = Without(shopper, self.config, removed, bytes.fromhex(state["salt"]))
        return Rebuild(self.config.data_dir, fresh, without, position=state["position"], strict=True), shopper, removed

    def _swap_in(self, fresh) -> None:
        """The rebuilt directory, open in `fresh`, renamed into place: the paths `fresh` writes
        by follow it (its open files are the same files), and its hold on the staging name goes."""
        from .rebase import swap_in

        staging = fresh.config.data_dir
        swap_in(self.config.data_dir)
        fresh.log.directory = self.config.data_dir / "log"
        fresh.erased.moved_to(self.config.data_dir)
        fresh.config = self.config
        lock.release(staging)
        lock.lock_file(staging).unlink(missing_ok=True)

    def _take_up(self, fresh) -> None:
        old_log, old_writer = self.log, self._writer
        for name in _TAKEN:
            setattr(self, name, getattr(fresh, name))
        old_writer.shutdown(wait=False)
        old_log.close()  # its files went with the old directory


def _said(task: asyncio.Task) -> None:
    """An erasure whose caller had gone still says how it ended."""
    if not task.cancelled() and task.exception() is not None:
        log.error("erasure failed; the store is as it was", extra={"error": str(task.exception())[:300]})
