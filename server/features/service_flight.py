"""The feature service's batches between admission and landing: a batch's event ids are marked
seen before its append, so until the batch is logged and applied (or given up and its ids
unmarked) they are neither new nor duplicates. A resend in this process waits for the batch to
land; a bulk load, or another replica (Redis says pending), is told to retry. A call cancelled
during its append still has its batch applied, in log order, never unmarked while it may be
in the log."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..models.errors import Unavailable
from .dedup import EventsInFlight
from .log import LogBroken

log = logging.getLogger("hanzo.server.features.service")


@dataclass(eq=False)
class Batch:
    """One batch on its way: its place in the log's order, its events and ids, `committed`
    (its first sequence number once applied in log order, or its append's error) and `landed`
    (set once it is logged and applied, or given up)."""
    ticket: int
    records: list[dict]
    hashes: np.ndarray
    committed: asyncio.Future
    landed: asyncio.Future


class BatchesInFlight:
    """Part of FeatureService (its log, writer, dedup, store, redis and commit)."""

    _tickets = 0  # batches sent to the writer, in the log's order
    _next_commit = 0  # the ticket whose outcome is handled next

    async def _append_and_commit(self, records: list[dict], hashes: np.ndarray) -> int:
        """Append in the writer's thread; applied strictly in log order, whatever happens to
        the caller. Returns the first sequence number once the batch is applied."""
        try:
            self._refuse_when_closed()  # (closing began, or the log broke, while this call was admitted)
        except BaseException:
            if self.redis is not None:
                self._keep(self._forget_async(hashes))
            else:
                self._forget(hashes)
            raise
        loop = asyncio.get_running_loop()
        batch = Batch(self._tickets, records, hashes, loop.create_future(), loop.create_future())
        self._tickets += 1
        self._in_flight.update(dict.fromkeys(hashes.tolist(), batch.landed))
        self._unlogged.update(hashes.tolist())
        try:
            appending = loop.run_in_executor(self._writer, self.log.append, records)
        except BaseException as exc:  # the writer is shut down: the batch never reaches the log
            self._finish(batch, None, exc)
            raise
        appending.add_done_callback(lambda done: self._finish(batch, done))
        try:
            first = await asyncio.shield(batch.committed)
        except asyncio.CancelledError:
            # the caller went during the append: the batch still lands (applied in log order,
            # never unmarked while it may be in the log, where a resend would find it twice)
            batch.committed.add_done_callback(lambda _: self._land_without_caller(batch))
            raise
        try:
            if self.redis is not None:
                await self.store.sends.send_async()
                if self._since_snapshot >= self.config.snapshot_every_events:
                    self._snapshot_in_background()  # (put off at the commit while Redis had not got it)
        finally:
            self._land(batch)
        return first

    def _finish(self, batch: Batch, done: asyncio.Future | None, error: BaseException | None = None) -> None:
        """An append has ended: outcomes are handled in ticket (log) order."""
        self._finished[batch.ticket] = (batch, done, error)
        while self._next_commit in self._finished:
            batch, done, error = self._finished.pop(self._next_commit)
            self._next_commit += 1
            self._settle(batch, done, error)

    def _settle(self, batch: Batch, done: asyncio.Future | None, error: BaseException | None) -> None:
        self._unlogged.difference_update(batch.hashes.tolist())
        if error is None and done is not None:
            error = asyncio.CancelledError() if done.cancelled() else done.exception()
        if error is not None:
            self._not_logged(batch, error)
            batch.committed.set_exception(error)
            return
        try:
            self.commit(batch.records, done.result(), background=True, hashes=batch.hashes)
        except Exception as exc:  # noqa: BLE001 - the log holds the batch; the caller (if any) hears it
            log.exception("a logged batch could not be applied to the store")
            self._land(batch)
            batch.committed.set_exception(exc)
            return
        batch.committed.set_result(done.result())

    def _land_without_caller(self, batch: Batch) -> None:
        if batch.committed.cancelled() or batch.committed.exception() is not None:
            return  # not logged: _not_logged has landed it
        if self.redis is None:
            self._land(batch)
        else:
            self._keep(self._send_quietly(batch))

    def _keep(self, coroutine) -> None:
        """A task nobody awaits, kept referenced until it ends."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait_for_in_flight(self, hashes: np.ndarray, rounds: int = 4, limit_s: float = 30.0) -> None:
        for _ in range(rounds):
            waiting = {self._in_flight[h] for h in hashes.tolist() if h in self._in_flight} if self._in_flight \
                else set()
            if not waiting:
                return
            await asyncio.wait(waiting, timeout=limit_s)  # never cancels them: other calls' batches

    def _holds_in_flight(self, hashes: np.ndarray) -> bool:
        return bool(self._in_flight) and any(h in self._in_flight for h in hashes.tolist())

    def _refuse_in_flight(self, hashes: np.ndarray) -> None:
        if self._in_flight:
            held = [i for i, h in enumerate(hashes.tolist()) if h in self._in_flight]
            if held:
                raise EventsInFlight(held)

    @staticmethod
    @contextlib.contextmanager
    def _refused_in_flight(records: list[dict]) -> Iterator[None]:
        try:
            yield
        except EventsInFlight as exc:
            ids = ", ".join(repr(records[i]["event_id"][:64]) for i in exc.indexes[:3])
            raise Unavailable(f"events {ids}{' ...' if len(exc.indexes) > 3 else ''} are held by a batch still "
                              f"being written (a send not yet answered, or another replica's); the batch was not "
                              f"taken: retry") from None

    def _land(self, batch: Batch) -> None:
        self._release(batch.hashes, batch.landed)

    def _release(self, hashes: np.ndarray, holder: asyncio.Future) -> None:
        """The ids `holder` held are no longer in flight; whoever waits on it goes on."""
        for h in hashes.tolist():
            if self._in_flight.get(h) is holder:
                del self._in_flight[h]
        if not holder.done():
            holder.set_result(None)

    async def _send_quietly(self, batch: Batch) -> None:
        try:
            await self.store.sends.send_async()
        except self._redis_errors:  # still queued: sent again before the next batch, or by the retrier
            log.warning("a logged batch whose caller had gone is not in Redis yet; it goes with the next one")
        finally:
            self._land(batch)

    def _not_logged(self, batch: Batch, exc: BaseException) -> None:
        """The append failed: unmark the ids for a resend, unless the log cannot say whether it
        holds them (LogBroken: ingestion is refused until a restart, which reads the log)."""
        if isinstance(exc, LogBroken):
            self._land(batch)
        elif self.redis is not None:  # the round trip off the loop
            self._keep(self._forget_async(batch.hashes, batch))
        else:
            self._forget(batch.hashes)
            self._land(batch)

    async def _forget_async(self, hashes: np.ndarray, batch: Batch | None = None) -> None:
        """_forget from the event loop; a batch's ids stay in flight (a resend waits) until done."""
        try:
            await self.dedup.forget_async(hashes, self.store.watermark)
        except self._redis_errors:
            log.warning("could not unmark a batch that was not logged; the next start will", exc_info=True)
        finally:
            if batch is not None:
                self._land(batch)

    def _forget(self, hashes: np.ndarray) -> None:
        """Unmark a batch that did not reach the log, so its resend is taken (best effort: with
        Redis away the ids stay pending, and the next start unmarks them)."""
        try:
            self.dedup.forget(hashes, self.store.watermark)
        except self._redis_errors:
            log.warning("could not unmark a batch that was not logged; the next start will", exc_info=True)
