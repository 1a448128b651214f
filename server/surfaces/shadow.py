"""Shadow traffic: a copy of a share of live requests answered by a model's candidate after
the primary answer has gone out, within a CPU budget, its answers logged beside the primary's.

The copy starts from the gRPC call's done callback (the edge puts the call's context in
RESPONDING), so it never delays the answer it copies; outside a gRPC call (in-process use) it
starts on the loop's next turn. It is skipped, and counted by reason, when the share does not
select the request, when the shadow's measured time has used its budget (`cpu_share` of one
CPU, refilled continuously: a copy costs the time it ran, its waits for the model included, so
the estimate errs on the side of the primary), or when `max_in_flight` copies are still
running. A copy works only in the gaps between calls: before each of its steps it waits until
no call is in flight (`quiet`, the edge's), so on a busy server copies are skipped rather than
make calls wait. Answers go
to `DATA_DIR/shadow/<model>.jsonl`, one line per copy: the request id, both versions, both
answers (product ids and scores, or the fraud score) and how long the candidate took; no
shopper id. A bounded queue feeds a writer thread; lines that do not fit are counted lost."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The gRPC call being answered (set by the edge), whose done callback starts a shadow copy.
RESPONDING: ContextVar[Any] = ContextVar("hanzo_responding", default=None)


@dataclass(frozen=True)
class ShadowConfig:
    share: float = 0.0  # of live requests copied to the candidate; 0: no shadow
    cpu_share: float = 0.25  # the most of one CPU the copies may take, measured over time
    max_in_flight: int = 8
    # a copy that has waited this long in all for gaps between calls is dropped (counted
    # `stale`): on a server that stays busy, copies are given up, never queued without end
    max_wait_s: float = 1.0
    queue_lines: int = 10_000  # answers waiting for the writer; more are counted lost
    max_file_mb: float = 256.0  # a model's log is rotated at this size (one older file kept)

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise ValueError(f"shadow share must be in [0, 1], not {self.share}")
        if not 0 < self.cpu_share <= 1:
            raise ValueError(f"shadow cpu_share must be in (0, 1], not {self.cpu_share}")
        if self.max_in_flight < 1:
            raise ValueError(f"shadow max_in_flight must be >= 1, not {self.max_in_flight}")
        if self.max_wait_s <= 0:
            raise ValueError(f"shadow max_wait_s must be > 0, not {self.max_wait_s}")
        if not 0 < self.max_file_mb <= 1 << 20:
            raise ValueError(f"shadow max_file_mb must be in (0, 1048576], not {self.max_file_mb}")


@dataclass
class ShadowStats:
    """Process-wide counters for /metrics: copies by (model, outcome), skips by (model, reason)."""
    calls: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    lines_lost: int = 0


STATS = ShadowStats()


def after_response(start: Callable[[], None]) -> None:
    """Run `start` once the current gRPC call has answered (on the loop's next turn outside one)."""
    context = RESPONDING.get()
    if context is None:
        asyncio.get_running_loop().call_soon(start)
    else:
        context.add_done_callback(lambda _context: start())


class _Budget:
    """Seconds of shadow work allowed: refilled at `rate` per second, at most `rate` banked."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.clock = rate, clock
        self.tokens, self.at = rate, clock()

    def available(self) -> bool:
        now = self.clock()
        self.tokens, self.at = min(self.rate, self.tokens + (now - self.at) * self.rate), now
        return self.tokens > 0

    def charge(self, seconds: float) -> None:
        self.tokens -= seconds


class ShadowLog:
    """Answer lines appended to one file per model by a writer thread, flushed each batch. A
    file that reaches `max_bytes` is renamed `<model>.jsonl.1` (replacing the one before) and a
    new one begun, so the log keeps at most twice that per model on disk."""

    def __init__(self, directory: Path | None, capacity: int, max_bytes: int = 256 << 20) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._queue: queue.Queue = queue.Queue(capacity)
        self._thread: threading.Thread | None = None

    def write(self, model: str, line: bytes) -> None:
        """One encoded line (encoded by the caller, on its own thread: the writer thread only
        writes, so it holds the interpreter's lock for as little as it can)."""
        if self.directory is None:
            return
        try:
            self._queue.put_nowait((model, line))
        except queue.Full:
            STATS.lines_lost += 1
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hanzo-shadow-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        files: dict[str, Any] = {}
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                for model, line in batch:
                    handle = files.get(model) or files.setdefault(model, open(self.directory / f"{model}.jsonl", "ab"))
                    handle.write(line)
                for model, handle in list(files.items()):
                    handle.flush()
                    if handle.tell() >= self.max_bytes:
                        handle.close()
                        del files[model]
                        path = self.directory / f"{model}.jsonl"
                        path.replace(path.with_name(path.name + ".1"))
            except OSError as exc:  # a full or read-only disk: these lines are lost, counted, and the writer goes on
                STATS.lines_lost += len(batch)
                log.warning("shadow answers not written", extra={"reason": str(exc), "lines": len(batch)})
        for handle in files.values():
            with contextlib.suppress(OSError):
                handle.close()

    def _next_batch(self) -> list | None:
        """Up to 1000 queued lines (waiting for the first); None once close() asked to stop."""
        item = self._queue.get()
        if item is None:
            return None
        batch = [item]
        while len(batch) < 1000:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(more)
        return batch

    def close(self) -> None:
        if self._thread is not None:
            try:
                self._queue.put(None, timeout=5.0)
            except queue.Full:  # a writer that cannot keep up: what is queued is lost
                STATS.lines_lost += self._queue.qsize()
            self._thread.join(10)
            self._thread = None


class _Stale(Exception):
    """A copy that waited its max_wait_s for gaps between calls."""


class _Turn:
    """One copy's turns: each step between pauses runs holding the shared step lock, taken at
    a moment when no call is in flight, so copies' steps never run back to back over a call
    that has arrived; all its waits together are bounded by max_wait_s."""

    def __init__(self, lock: asyncio.Lock, quiet: Callable[[], Awaitable[None]] | None, busy: Callable[[], bool],
                 max_wait_s: float) -> None:
        self.lock, self.quiet, self.busy, self.max_wait_s = lock, quiet, busy, max_wait_s
        self.holding = False
        self.waited = 0.0

    def end(self) -> None:
        if self.holding:
            self.lock.release()
            self.holding = False

    async def pause(self) -> None:
        """Let any call that is ready go first, then wait for a gap and the lock."""
        began = time.perf_counter()
        self.end()
        await asyncio.sleep(0)
        try:
            await asyncio.wait_for(self._gap(), max(self.max_wait_s - self.waited, 0.0))
        except asyncio.TimeoutError:
            raise _Stale() from None
        finally:
            self.waited += time.perf_counter() - began

    async def _gap(self) -> None:
        while True:
            await self.lock.acquire()
            if not self.busy():
                self.holding = True
                return
            self.lock.release()
            if self.quiet is not None:
                await self.quiet()


class Shadow:
    def __init__(self, config: ShadowConfig, directory: Path | None,
                 clock: Callable[[], float] = time.monotonic,
                 quiet: Callable[[], Awaitable[None]] | None = None) -> None:
        self.config = config
        # waits until no call is in flight, and whether one is (the edge's): a copy works only in
        # the gaps between calls
        self.quiet = quiet
        self.busy: Callable[[], bool] = lambda: False
        self.log = ShadowLog(directory, config.queue_lines, int(config.max_file_mb * (1 << 20)))
        self._budget = _Budget(config.cpu_share, clock)
        self._seen = 0
        self._in_flight = 0
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self._step = asyncio.Lock()  # one copy's step at a time, so copies never run back to back

    @property
    def enabled(self) -> bool:
        return self.config.share > 0 and not self._closed

    def offer(self, model: str, candidate: Any, request_id: str, primary: dict,
              run: Callable[[Any, Callable[[], Awaitable[None]]], Awaitable[dict]]) -> None:
        """Maybe copy this request to `candidate` (a ModelVersion, or None when the model has
        none): `run(candidate, pause)` answers it as the primary's code path would, awaiting
        `pause()` between its steps (each then waits for a gap between calls); `primary` is the
        primary's answer as logged."""
        if candidate is None or not self.enabled:
            return
        self._seen += 1  # every 1/share-th request, evenly: no random draw on the serving path
        if int(self._seen * self.config.share) == int((self._seen - 1) * self.config.share):
            STATS.skipped[(model, "share")] += 1
            return
        if self._in_flight >= self.config.max_in_flight:
            STATS.skipped[(model, "in_flight")] += 1
            return
        if not self._budget.available():
            STATS.skipped[(model, "cpu_budget")] += 1
            return
        self._in_flight += 1
        after_response(lambda: self._start(model, candidate, request_id, primary, run))

    def _start(self, model: str, candidate: Any, request_id: str, primary: dict,
               run: Callable[[Any, Callable[[], Awaitable[None]]], Awaitable[dict]]) -> None:
        if self._closed:
            self._in_flight -= 1
            return
        task = asyncio.get_running_loop().create_task(self._run(model, candidate, request_id, primary, run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, model: str, candidate: Any, request_id: str, primary: dict,
                   run: Callable[[Any, Callable[[], Awaitable[None]]], Awaitable[dict]]) -> None:
        turn = _Turn(self._step, self.quiet, self.busy, self.config.max_wait_s)
        line = {"request_id": request_id, "model": model, "candidate_version": candidate.version, **primary}
        started = time.perf_counter()
        try:
            try:
                await turn.pause()
                line["candidate"] = await run(candidate, turn.pause)
                STATS.calls[(model, "answered")] += 1
            except Exception as exc:  # noqa: BLE001 - a candidate's failure is logged, never raised at anyone
                if isinstance(exc, _Stale):
                    raise
                line["candidate_error"] = type(exc).__name__  # its message might quote a request's values
                STATS.calls[(model, "failed")] += 1
            finally:
                took = time.perf_counter() - started - turn.waited  # its work, not its waits for a gap
                self._budget.charge(took)
                self._in_flight -= 1
            line["candidate_ms"] = round(took * 1000, 3)
            line["waited_ms"] = round(turn.waited * 1000, 3)
            await turn.pause()  # the encoding too, in a gap
            self.log.write(model, (json.dumps(line, separators=(",", ":")) + "\n").encode())
        except _Stale:
            STATS.skipped[(model, "stale")] += 1
        finally:
            turn.end()

    async def close(self, timeout_s: float = 5.0) -> None:
        """No new copies; those running get `timeout_s` to finish, then are cancelled; the log
        is written out."""
        self._closed = True
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        await asyncio.to_thread(self.log.close)
