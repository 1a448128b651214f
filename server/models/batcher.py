"""The dynamic batcher: config.pbtxt's scheduling, behind one `await infer(...)` per request.

It owns the queue, the futures, deadlines, the batch size and the queue delay (Ray Serve's
batching is the model: a failure fails its batch and never hangs a caller). Batches form on
the event loop thread; each runs on a worker thread of its own instance, so ONNX Runtime
computes with the GIL released while the loop keeps taking requests; a model fast enough that the thread
hand-over would cost more than the model runs inline on the loop thread instead.

Forming a batch:
- An instance that becomes free takes the oldest request and every queued request behind
  it with the same non-batch shape, up to max_batch_size rows (or the largest
  preferred_batch_size that the queue fills).
- Requests that arrive while every instance is busy simply wait, so batches grow with load
  at no added latency.
- With a queue delay, a partial batch waits up to the delay (counted from its oldest
  request) for more rows, but only while traffic is flowing: a request that finds the
  model idle (alone in the queue, nothing arrived in the delay before it) leaves at once.
  Timers run at the event loop's resolution (about 1 ms under uvloop).
- Expired (client deadline, or the queue policy's timeout) and cancelled requests are
  dropped before a batch runs; a full queue (max_queue_size) rejects at once with
  RESOURCE_EXHAUSTED.
- The queue is always bounded: max_queue_size 0 (Triton's "unbounded", and the default when
  config.pbtxt sets no default_queue_policy) means DEFAULT_QUEUE_BATCHES full batches,
  64 x max_batch_size requests (64 for a model that does not batch). Deeper than that, a
  request would wait out dozens of batches: shedding it is kinder to its caller and to memory.
- A batch whose run is cancelled (a remote call torn down) fails its callers with
  UNAVAILABLE; the instance is freed and the batcher goes on.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from .errors import DeadlineExceeded, HanzoError, InvalidArgument, ResourceExhausted, Unavailable
from .config import BatchingPolicy
from .priority_queue import LeveledQueue
from .statistics import ModelStatistics

RunBatch = Callable[[int, dict[str, np.ndarray]], dict[str, np.ndarray]]
DEFAULT_QUEUE_BATCHES = 64


def default_queue_size(max_batch_size: int) -> int:
    """The queue bound where config.pbtxt gives none (max_queue_size 0)."""
    return DEFAULT_QUEUE_BATCHES * max(max_batch_size, 1)


class _Pending:
    __slots__ = ("inputs", "rows", "key", "future", "enqueued", "deadline", "gap", "timer", "level")

    def __init__(self, inputs, rows, key, future, enqueued, deadline, gap, level) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.future = future
        self.enqueued = enqueued
        self.deadline = deadline
        self.gap = gap
        self.level = level  # priority level, 1 the highest (0 where the model has no levels)
        self.timer: asyncio.TimerHandle | None = None  # the queue policy's timeout


class BatcherClosed(Unavailable):
    pass


class BatchCancelled(Unavailable):
    pass


class DynamicBatcher:
    def __init__(self, name: str, policy: BatchingPolicy, run_batch: RunBatch, stats: ModelStatistics,
                 run_batch_async=None) -> None:
        self.name = name
        self.policy = policy
        self._run_batch = run_batch
        # a backend that waits on the network (a remote Triton) runs its batches as tasks on
        # the loop: no thread held while the batch is away
        self._run_batch_async = run_batch_async
        self._stats = stats
        self.max_queue_size = policy.max_queue_size or default_queue_size(policy.max_batch_size)
        count = max(policy.instance_count, 1)
        self._instance_count = count
        self._free = list(range(count - 1, -1, -1))
        self._executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix=f"hanzo-{name}")
        self._queue: deque[_Pending] | LeveledQueue = (LeveledQueue(policy.priority_levels) if policy.priority_levels
                                                        else deque())
        self._queued_rows = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatch_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_arrival = -math.inf
        self._idle_waiters: list[asyncio.Future] = []
        self._closed = False
        # Run batches on the event loop thread itself: for models that answer in well under a
        # millisecond, the two thread hops (and the GIL hand-over) cost more than the model.
        # Decided once, after warm-up (ModelVersion.choose_execution).
        self.inline = False

    # ------------------------------------------------------------------ callers

    @property
    def queue_size(self) -> int:
        return len(self._queue)

    @property
    def busy_instances(self) -> int:
        return self._instance_count - len(self._free)

    def level(self, priority: int) -> int:
        """The queue level of a request's `priority` (0: the model's default). Raises
        InvalidArgument for a level the model does not have."""
        levels = self.policy.priority_levels
        if priority == 0:
            return self.policy.default_priority_level
        if not levels:
            raise InvalidArgument('parameters["priority"]', f"model {self.name!r} has no priority levels (its "
                                                            f"dynamic_batching sets no priority_levels)")
        if not 0 < priority <= levels:
            raise InvalidArgument('parameters["priority"]', f"{priority} is not a priority level of model "
                                                            f"{self.name!r} (levels 1..{levels}, 1 the highest)")
        return priority

    async def infer(
        self, inputs: dict[str, np.ndarray], rows: int, deadline: float | None = None,
        queue_timeout_s: float | None = None, level: int = 0,
    ) -> dict[str, np.ndarray]:
        """Run one request (already validated; `rows` along the batch dim) and return its
        outputs. `deadline` is time.monotonic() seconds; `queue_timeout_s` overrides the
        policy's queue timeout where the policy allows it; `level` from level()."""
        if self._closed:
            raise BatcherClosed(f"model {self.name!r} is unloading")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        policy = self.policy
        now = time.monotonic()
        if len(self._queue) >= self.max_queue_size:
            self._purge_done_head()
            if isinstance(self._queue, LeveledQueue):
                self._queued_rows -= self._queue.drop_done()
            if len(self._queue) >= self.max_queue_size:
                self._stats.record_failure("queue_full", 0)
                raise ResourceExhausted(
                    f"model {self.name!r}: queue full ({self.max_queue_size} requests waiting); retry with backoff"
                )
        timeout = policy.queue_timeout_s
        if queue_timeout_s is not None and policy.allow_timeout_override:
            timeout = queue_timeout_s
        if timeout is not None:
            deadline = now + timeout if deadline is None else min(deadline, now + timeout)
        if deadline is not None and deadline <= now:
            self._stats.record_failure("deadline", 0)
            raise DeadlineExceeded(f"model {self.name!r}: deadline expired before the request was queued")
        gap = now - self._last_arrival
        self._last_arrival = now
        if self.inline and self._free and not self._queue and not self._dispatch_scheduled and (
                gap > policy.max_queue_delay_s or not policy.dynamic):
            return self._run_now(inputs, rows, now)
        key = tuple(a.shape[1:] for a in inputs.values()) if policy.max_batch_size else None
        future = loop.create_future()
        item = _Pending(inputs, rows, key, future, now, deadline, gap, level)
        self._queue.append(item)
        self._queued_rows += rows
        if timeout is not None:
            item.timer = loop.call_later(deadline - now, self._expire, item)
        if self._free and not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            # After the callbacks already ready: requests that arrived in the same loop
            # iteration join this batch at no cost in latency.
            loop.call_soon(self._dispatch)
        return await future

    def _run_now(self, inputs: dict[str, np.ndarray], rows: int, now: float) -> dict[str, np.ndarray]:
        """An idle inline model answers within the caller's call: suspending it would let every
        other ready callback run before it resumes. Same accounting as a batch of one."""
        instance = self._free.pop()
        start = time.perf_counter_ns()
        try:
            outputs = self._run_batch(instance, inputs)
        except Exception as exc:
            self._stats.record_failure("backend", time.perf_counter_ns() - start)
            raise HanzoError(f"model {self.name!r}: backend failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._free.append(instance)
        elapsed = time.perf_counter_ns() - start
        stats = self._stats
        stats.record_batch(rows, 0, elapsed, 0)
        stats.queue.add(0)
        stats.success.add(elapsed)
        return outputs

    async def drain(self) -> None:
        """Wait until nothing is queued or running."""
        if not self._queue and not self.busy_instances:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        await waiter

    async def close(self) -> None:
        """Refuse new requests, finish the queued and running ones, release the threads."""
        self._closed = True
        await self.drain()
        self._executor.shutdown(wait=False)

    # ------------------------------------------------------------------ scheduling

    def _expire(self, item: _Pending) -> None:
        if not item.future.done():
            item.future.set_exception(DeadlineExceeded(f"model {self.name!r}: request timed out in the queue"))
            self._stats.record_failure("deadline", time.monotonic_ns() - int(item.enqueued * 1e9))

    def _purge_done_head(self) -> None:
        queue = self._queue
        while queue and queue[0].future.done():
            self._queued_rows -= queue.popleft().rows

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        queue = self._queue
        while self._free and queue:
            now = time.monotonic()
            head = queue[0]
            if head.future.done():  # cancelled or expired by a timer
                queue.popleft()
                self._queued_rows -= head.rows
                continue
            if head.deadline is not None and head.deadline <= now:
                queue.popleft()
                self._queued_rows -= head.rows
                head.future.set_exception(DeadlineExceeded(f"model {self.name!r}: deadline expired in the queue"))
                self._stats.record_failure("deadline", int((now - head.enqueued) * 1e9))
                continue
            wait = self._wait_for_more(head, now)
            if wait > 0:
                if self._timer is None:
                    self._timer = self._loop.call_later(wait, self._on_timer)
                break
            self._launch(self._take_batch(), now)
            if self.inline:
                # Let this batch's callers answer before the next batch holds the loop.
                if queue and not self._dispatch_scheduled:
                    self._dispatch_scheduled = True
                    self._loop.call_soon(self._dispatch)
                break
        self._notify_if_idle()

    def _wait_for_more(self, head: _Pending, now: float) -> float:
        """Seconds a partial batch should still wait for more rows (0: go now)."""
        policy = self.policy
        delay = policy.max_queue_delay_s
        if not policy.dynamic or delay <= 0 or self._queued_rows >= policy.target_rows:
            return 0.0
        if len(self._queue) == 1 and head.gap > delay:
            return 0.0  # the model was idle: waiting would only add latency
        return max(head.enqueued + delay - now, 0.0)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take_batch(self) -> list[_Pending]:
        policy, queue = self.policy, self._queue
        first = queue.popleft()
        self._queued_rows -= first.rows
        batch = [first]
        if not policy.dynamic:
            return batch
        limit = policy.max_batch_size
        if policy.preferred_batch_sizes:
            available = self._queued_rows + first.rows
            fitting = [p for p in policy.preferred_batch_sizes if p <= available]
            if fitting:
                limit = fitting[-1]
        rows = first.rows
        while queue and rows < limit:
            item = queue[0]
            if item.future.done():
                queue.popleft()
                self._queued_rows -= item.rows
                continue
            if item.key != first.key or rows + item.rows > limit:
                break
            queue.popleft()
            self._queued_rows -= item.rows
            batch.append(item)
            rows += item.rows
        return batch

    def _launch(self, batch: list[_Pending], now: float) -> None:
        instance = self._free.pop()
        queue_stats = self._stats.queue
        for item in batch:
            queue_stats.add(int((now - item.enqueued) * 1e9))
            if item.timer is not None:  # it left the queue in time
                item.timer.cancel()
        if self.inline:
            try:
                outcome, error = self._execute(instance, batch), None
            except Exception as exc:  # the batch fails, the batcher goes on
                outcome, error = None, exc
            self._finish(instance, batch, outcome, error)
            return
        if self._run_batch_async is not None:
            done = self._loop.create_task(self._execute_async(instance, batch))
            done.add_done_callback(lambda fut: self._complete(instance, batch, fut))
            return
        done = self._loop.run_in_executor(self._executor, self._execute, instance, batch)
        done.add_done_callback(lambda fut: self._complete(instance, batch, fut))

    # ------------------------------------------------------------------ worker thread

    @staticmethod
    def _feeds(batch: list[_Pending]) -> dict[str, np.ndarray]:
        if len(batch) == 1:
            return batch[0].inputs
        return {name: np.concatenate([item.inputs[name] for item in batch]) for name in batch[0].inputs}

    def _split(self, batch: list[_Pending], outputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        if len(batch) == 1 or not self.policy.max_batch_size:
            return [outputs]
        results = []
        start = 0
        for item in batch:
            end = start + item.rows
            results.append({name: value[start:end] for name, value in outputs.items()})
            start = end
        return results

    def _execute(self, instance: int, batch: list[_Pending]):
        t0 = time.perf_counter_ns()
        feeds = self._feeds(batch)
        t1 = time.perf_counter_ns()
        outputs = self._run_batch(instance, feeds)
        t2 = time.perf_counter_ns()
        results = self._split(batch, outputs)
        t3 = time.perf_counter_ns()
        return results, t1 - t0, t2 - t1, t3 - t2

    async def _execute_async(self, instance: int, batch: list[_Pending]):
        t0 = time.perf_counter_ns()
        feeds = self._feeds(batch)
        t1 = time.perf_counter_ns()
        outputs = await self._run_batch_async(instance, feeds)
        t2 = time.perf_counter_ns()
        results = self._split(batch, outputs)
        t3 = time.perf_counter_ns()
        return results, t1 - t0, t2 - t1, t3 - t2

    # ------------------------------------------------------------------ back on the loop

    def _complete(self, instance: int, batch: list[_Pending], fut: asyncio.Future) -> None:
        # exception() on a cancelled future raises inside this callback: the instance would
        # never be freed and the batch's callers would wait for ever
        if fut.cancelled():
            error: BaseException | None = BatchCancelled(f"model {self.name!r}: the batch's run was cancelled")
        else:
            error = fut.exception()
        self._finish(instance, batch, None if error else fut.result(), error)
        self._dispatch()

    def _finish(self, instance: int, batch: list[_Pending], outcome, error: BaseException | None) -> None:
        self._free.append(instance)
        now = time.monotonic()
        stats = self._stats
        if error is not None:
            failure = error if isinstance(error, HanzoError) else HanzoError(
                f"model {self.name!r}: backend failed: {type(error).__name__}: {error}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(failure)
                stats.record_failure("backend", int((now - item.enqueued) * 1e9))
            return
        results, input_ns, infer_ns, output_ns = outcome
        stats.record_batch(sum(item.rows for item in batch), input_ns, infer_ns, output_ns)
        for item, result in zip(batch, results):
            if not item.future.done():
                item.future.set_result(result)
            stats.success.add(int((now - item.enqueued) * 1e9))

    def _notify_if_idle(self) -> None:
        if self._idle_waiters and not self._queue and not self.busy_instances:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
