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
from typing import Iterator

import numpy as np

from ..models.errors import Unavailable
from .dedup import EventsInFlight
from .log import LogBroken

log = logging.getLogger("hanzo.server.features.service")


class BatchesInFlight:
    """Part of FeatureService (its dedup, store, redis and commit)."""

    async def _wait_for_in_flight(self, hashes: np.ndarray, rounds: int = 4) -> None:
        for _ in range(rounds):
            waiting = {self._in_flight[h] for h in hashes.tolist() if h in self._in_flight} if self._in_flight \
                else set()
            if not waiting:
                return
            await asyncio.wait(waiting)  # never cancels them: they are other calls' batches

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

    def _land(self, hashes: np.ndarray, landed: asyncio.Future) -> None:
        for h in hashes.tolist():
            if self._in_flight.get(h) is landed:
                del self._in_flight[h]
        if not landed.done():
            landed.set_result(None)

    def _settle_late(self, records: list[dict], hashes: np.ndarray, landed: asyncio.Future,
                     done: asyncio.Future) -> None:
        """A cancelled call's append has ended (on the event loop, in log order)."""
        if done.cancelled() or done.exception() is not None:
            self._not_logged(hashes, landed, done.exception())
            return
        try:
            self.commit(records, done.result(), background=True, hashes=hashes)  # queued in log order here
        except Exception:  # noqa: BLE001 - a callback has no caller to tell; the log holds the batch
            log.exception("a logged batch whose caller had gone was not applied")
            self._land(hashes, landed)
            return
        if self.redis is None:
            self._land(hashes, landed)
        else:
            asyncio.ensure_future(self._send_quietly(hashes, landed))

    async def _send_quietly(self, hashes: np.ndarray, landed: asyncio.Future) -> None:
        try:
            await self.store.sends.send_async()
        except self._redis_errors:  # still queued: the next batch sends it first
            log.warning("a logged batch whose caller had gone is not in Redis yet; it goes with the next one")
        finally:
            self._land(hashes, landed)

    def _not_logged(self, hashes: np.ndarray, landed: asyncio.Future, exc: BaseException | None) -> None:
        """The append failed: unmark the ids for a resend, unless the log cannot say whether
        it holds them (LogBroken: the server stops, and its restart knows from the log)."""
        if isinstance(exc, LogBroken):
            self._land(hashes, landed)
        elif self.redis is not None:  # the round trip off the loop
            asyncio.ensure_future(self._forget_async(hashes, landed))
        else:
            self._forget(hashes)
            self._land(hashes, landed)

    async def _forget_async(self, hashes: np.ndarray, landed: asyncio.Future) -> None:
        """_forget from the event loop; the ids stay in flight (a resend waits) until done."""
        try:
            await self.dedup.forget_async(hashes, self.store.watermark)
        except self._redis_errors:
            log.warning("could not unmark a batch that was not logged; the next start will", exc_info=True)
        finally:
            self._land(hashes, landed)

    def _forget(self, hashes: np.ndarray) -> None:
        """Unmark a batch that did not reach the log, so its resend is taken (best effort: with
        Redis away the ids stay pending, and the next start unmarks them)."""
        try:
            self.dedup.forget(hashes, self.store.watermark)
        except self._redis_errors:
            log.warning("could not unmark a batch that was not logged; the next start will", exc_info=True)
