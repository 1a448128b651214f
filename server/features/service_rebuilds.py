"""A running server's store rebuilt while it goes on serving reads and taking events: an
erasure (the Admin Forget RPC; erasure.Erasure) or a retention pass (retention.py). A child
process at the lowest CPU priority (rebuild_child) rebuilds the data directory beside the live
one, catching up with the log as it grows, and seals it with a snapshot; this process then
opens it, takes the rest of the log into it, and only for that last stretch refuses new
batches UNAVAILABLE: the batches under way land, a snapshot being written finishes, the last
events are re-applied, the rebuilt directory is renamed into place and the service takes up
its store, dedup index, log and key in one step on the event loop. One rebuild at a time; no
snapshot is forked while one runs."""
from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Awaitable, Callable

from ..models.errors import FailedPrecondition, Unavailable
from . import lock, retention
from .rebuild_child import ChildFailed, RebuildChild
from .erasure_records import Shopper, Without, receipt
from .tenancy import scoped

log = logging.getLogger("hanzo.server.features.service")

# the log may run this far ahead of the rebuild when the last stretch begins
CATCH_UP_EVENTS = 20_000
# re-applied per step, so that a server stopping abandons a rebuild within a step
STEP_EVENTS = 200_000
# what a service opened on the rebuilt directory hands over
_TAKEN = ("store", "dedup", "log", "applied_seq", "pseudonyms", "erased", "retained_since", "_since_snapshot",
          "_writer")


class OnlineRebuilds:
    """Mixin of FeatureService."""

    _erasing = False  # the last stretch: batches refused
    _child: RebuildChild | None = None  # the rebuild's child process, while it runs
    retained_since: int | None = None  # what the store holds back to (retention.retained_since), read at open
    _rebuild: asyncio.Task | None = None

    async def forget(self, merchant: str, user: str) -> dict:
        """Erase `user` of `merchant`; the receipt. A caller that gives up (its deadline, a
        cancellation) leaves the erasure to finish: stopped between the rebuild and the
        take-up, the service would write on into the directory it replaced."""
        if self.redis is not None:
            raise FailedPrecondition("in Redis mode an erasure rebuilds Redis from every replica's log: stop the "
                                     "replicas and run `hanzo forget --redis-url URL --data-dir DIR ...` with each "
                                     "replica's data directory")
        if not user:
            raise ValueError("name the shopper to forget (user_id)")
        return await asyncio.shield(self._start(self._erase(merchant, user), "an erasure"))

    def retain_if_due(self) -> asyncio.Task | None:
        """Start a retention pass if the log holds events past the period (and nothing else is
        rebuilding); the task, or None."""
        if self.redis is not None or self.rebuild_running or not self.is_open or self._closing:
            return None
        if not retention.due(self.config, self.retained_since, self.store.watermark):
            return None
        return self._start(self._retain(), "a retention pass")

    def _start(self, job: Awaitable[dict], what: str) -> asyncio.Task:
        if self.rebuild_running:
            raise Unavailable("the store is being rebuilt already (an erasure or a retention pass); retry when it "
                              "is done")
        if not self.is_open or self._closing:
            raise Unavailable("the feature store is opening or closing")
        self._rebuild = asyncio.get_running_loop().create_task(job)
        self._rebuild.add_done_callback(lambda task: _said(task, what))
        return self._rebuild

    @property
    def rebuild_running(self) -> bool:
        return self._rebuild is not None and not self._rebuild.done()

    async def rebuild_settled(self) -> None:
        """Wait for a rebuild under way to end (a close must not run beside it): one still in
        its child is abandoned at once (the child killed), one past it within a step."""
        if self._child is not None and self._child.process.returncode is None:
            self._child.process.kill()
        if self.rebuild_running:
            await asyncio.wait([self._rebuild])

    async def _erase(self, merchant: str, user: str) -> dict:
        started = time.monotonic()
        if self.config.erasure_later_events == "refuse" and not self.erased.holds(scoped(merchant, user)):
            self.erased.add(scoped(merchant, user))  # refused from now on, by this service too

        def change(state: dict) -> Without:
            shopper = Shopper(state["user"], set(state["sessions"]), set(state["orders"]), state["held"],
                              state["seen"])
            return Without(shopper, self.config, Counter(state["removed"]), bytes.fromhex(state["salt"]))

        closed, work, paused = await self._rebuild_live({"job": "erasure", "merchant": merchant, "user": user},
                                                        change)
        if work is None:
            return closed["receipt"]  # nothing of theirs was held: the store is as it was
        without = work.change
        out = receipt(self.config, merchant, user, without.removed, without.shopper,
                      closed["state"]["events"] + work.events, started)
        out["ingestion_paused_seconds"] = paused
        log.info("shopper erased", extra={"events_removed": out["events_removed"], "seconds": out["seconds"],
                                          "ingestion_paused_seconds": paused})
        return out

    async def _retain(self) -> dict:
        started = time.monotonic()
        oldest_kept = retention.cutoff(self.config, self.store.watermark)

        def change(state: dict) -> retention.KeepRecent:
            return retention.KeepRecent(oldest_kept, Counter(state["removed"]), bytes.fromhex(state["salt"]))

        closed, work, paused = await self._rebuild_live({"job": "retention", "oldest_kept": oldest_kept}, change)
        removed = work.change.removed if work is not None else Counter()
        kept = closed["state"]["events"] + (work.events if work is not None else 0)
        out = retention.receipt(self.config, oldest_kept, removed, kept, started)
        out["ingestion_paused_seconds"] = paused
        log.info("retention pass", extra={k: out[k] for k in ("oldest_kept", "events_removed", "events_kept",
                                                                "seconds", "ingestion_paused_seconds")})
        return out

    async def _rebuild_live(self, job: dict, change: Callable[[dict], Callable[[list[dict]], list[dict]]]):
        """(the child's "close" answer, the Rebuild this process finished or None where the
        child found nothing to do, seconds ingestion was paused)."""
        try:
            closed = await self._rebuilt_in_child(job)
        except ChildFailed as exc:
            raise Unavailable(f"the rebuild did not finish ({exc}); the store is as it was: retry") from None
        if not closed["state"]["rebuilt"]:
            return closed, None, 0.0
        work = await asyncio.to_thread(self._open_rebuilt, closed["state"], change)
        try:
            await self._catch_up(lambda until: asyncio.to_thread(work.read, until), work.position)
            self._erasing = True  # the last stretch: new batches wait outside
            paused = time.monotonic()
            while self._in_flight or self._next_commit < self._tickets:  # the batches under way land
                await asyncio.sleep(0.01)
            await self.background_settled()
            await asyncio.to_thread(work.read, self.applied_seq)
            old = await asyncio.to_thread(self._swap_in, work.service)
        except BaseException:
            self._erasing = False
            await asyncio.to_thread(work.abandon)
            raise
        # renamed into place: from here the rebuilt store is the store, whatever happens
        self._take_up(work.service)
        self._erasing = False
        paused = round(time.monotonic() - paused, 3)
        await asyncio.to_thread(shutil.rmtree, old, True)  # (a start deletes it too, if this never ends)
        return closed, work, paused

    async def _rebuilt_in_child(self, job: dict) -> dict:
        """The child's rebuild up to a few thousand events short of the log's end, sealed with a
        snapshot and closed: what rebuild_child's "close" answers."""
        await self.background_settled()  # (a snapshot that ends during the rebuild may trim the log)
        child = self._child = await RebuildChild.start(self.config, job)
        try:
            if await child.begin():
                reached = await self._catch_up(child.read, 0)
                await child.seal()  # the rebuilt store's snapshot, written before the pause
                await self._catch_up(child.read, reached)
            return await child.close()
        except BaseException:
            await child.abandon()
            await asyncio.to_thread(self._discard_staging)  # a child killed midway could not
            raise
        finally:
            self._child = None

    def _discard_staging(self) -> None:
        from .rebase import staging_dir

        staging = staging_dir(self.config.data_dir)
        shutil.rmtree(staging, ignore_errors=True)
        lock.lock_file(staging).unlink(missing_ok=True)

    async def _catch_up(self, read: Callable[[int], Awaitable[int]], reached: int) -> int:
        """Re-apply the log until the rebuild is less than CATCH_UP_EVENTS behind it. A server
        stopping meanwhile abandons the rebuild (the store stays as it was)."""
        while self.applied_seq - reached > CATCH_UP_EVENTS:
            if self._closing:
                raise Unavailable("the server is stopping: the rebuild was abandoned and the store is as it was; "
                                  "retry on a running server")
            reached = await read(min(self.applied_seq, reached + STEP_EVENTS))
        return reached

    def _open_rebuilt(self, state: dict, change: Callable[[dict], Any]):
        """The child's rebuilt directory opened here, to take the rest of the log: its Rebuild."""
        from .rebase import Rebuild, as_rebuild, staging_dir  # (rebase builds FeatureServices: a module above)

        fresh = as_rebuild(type(self)(dataclasses.replace(self.config, data_dir=staging_dir(self.config.data_dir))))
        # Its millions of objects would make the collector's passes (run by whichever thread
        # allocates, holding the interpreter) stall the event loop: none while it loads, and
        # once loaded they live as long as the server, out of every pass (as at its start).
        gc.disable()
        try:
            fresh.open()
        finally:
            gc.freeze()
            gc.enable()
        return Rebuild(self.config.data_dir, fresh, change(state), position=state["position"], strict=True)

    def _swap_in(self, fresh) -> Path:
        """The rebuilt directory, open in `fresh`, renamed into place: the paths `fresh` writes
        by follow it (its open files are the same files), and its hold on the staging name goes.
        Returns where the old directory went (deleted once this service has let go of it)."""
        from .rebase import swap_in

        staging = fresh.config.data_dir
        old = swap_in(self.config.data_dir, keep_old=True)
        fresh.log.directory = self.config.data_dir / "log"
        fresh.retained_since = retention.retained_since(self.config.data_dir)
        fresh.erased.moved_to(self.config.data_dir)
        fresh.config = self.config
        lock.release(staging)
        lock.lock_file(staging).unlink(missing_ok=True)
        return old

    def _take_up(self, fresh) -> None:
        """(`limits` and `rebuilding` are not taken: this service keeps its own.)"""
        old_log, old_writer = self.log, self._writer
        for name in _TAKEN:
            setattr(self, name, getattr(fresh, name))
        old_writer.shutdown(wait=False)
        old_log.close()  # its files went with the old directory


def _said(task: asyncio.Task, what: str) -> None:
    """A rebuild whose caller had gone (or that nobody awaits: retention) still says how it ended."""
    if not task.cancelled() and task.exception() is not None:
        log.error(f"{what} failed; the store is as it was", extra={"error": str(task.exception())[:300]})
