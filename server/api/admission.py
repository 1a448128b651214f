"""Admission control: which calls the server takes on, before it spends anything on them.

Each gated RPC has a concurrency limit that adapts to the latency it measures (AIMD around a
no-load estimate, as Netflix's concurrency-limits and Envoy's adaptive concurrency do): the
limit grows by one per round while calls finish near the no-load latency, and is cut by a
factor when they take longer than `tolerance` times it. A call beyond the limit waits in a
small queue; one that finds the queue full, or whose remaining deadline is shorter than the
queue's expected wait plus a call's service time, is refused RESOURCE_EXHAUSTED at once, so
overload reaches the client as a quick refusal it can retry elsewhere rather than as a
timeout after the server has done the work anyway.

All RPCs share one pool: past `total_limit` calls in flight, an RPC is only admitted within
its first `min_limit` slots, so a burst on one RPC cannot take every slot from the others.
Before any of that, with `cpu_shedding` on, a share of new calls is turned away while the
server's CPU is past `cpu_target` (saturation.py): the one signal that rises with the calls
waiting in gRPC's own queue, before any gate.

Merchants share each RPC's slots: a call that would have to wait is refused (reason
`merchant_share`) when its merchant already holds its share of the RPC's limit and queue
(split evenly among the merchants with calls in flight or waiting), so one shop's burst fills
the queue only up to its share and another shop's calls still find a place in it. While there
is room, anyone's call goes straight in: a lone merchant may use everything. And while the CPU
is past `merchant_cpu_target`, a share of the calls of the merchants spending more than an even
share of the handlers' time is refused (reason `merchant_cpu`; merchant_shares.py), so one
shop's burst within the server's capacity does not make every other shop's calls wait behind
its own on the event loop."""
from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..models.errors import ResourceExhausted
from .merchant_shares import MerchantShares
from .saturation import Saturation

# Weight of the newest call in the service-time average (a 1-in-10 moving average).
SERVICE_WEIGHT = 0.1
INFINITY = float("inf")
REASONS = ("cpu", "merchant_cpu", "queue_full", "merchant_share", "deadline", "cancelled")


@dataclass
class AdmissionConfig:
    # Off: every call goes straight in (the model queues still shed load).
    enabled: bool = True
    # Calls in flight per RPC: where the limit starts and the bounds it adapts within.
    initial_limit: int = 32
    min_limit: int = 4
    max_limit: int = 256
    # All gated RPCs together; past it an RPC still gets its first min_limit slots.
    total_limit: int = 512
    # Calls that wait for a slot, per RPC; more are refused at once.
    queue_size: int = 32
    # A call slower than tolerance x the no-load latency cuts the limit by `backoff`.
    tolerance: float = 2.0
    backoff: float = 0.9
    # The no-load latency is the fastest call of the last one or two windows of this length.
    window_seconds: float = 10.0
    # Turn new calls away while the CPU is busier than cpu_target (0-1 of the CPUs the process
    # may use, or of the event loop's thread): each cpu_window_seconds the share turned away
    # moves by cpu_gain times the distance from the target, up to cpu_max_shed. Off by default:
    # the process's background work (a model's training, a snapshot) counts too, and so do the
    # refusals themselves, which for a cheap call can keep the CPU past the target on their own.
    cpu_shedding: bool = False
    cpu_target: float = 0.9
    cpu_gain: float = 0.5
    cpu_max_shed: float = 0.95
    cpu_window_seconds: float = 0.05
    # Merchants' shares of the event loop (merchant_shares.py); the target is lower than
    # cpu_target because it bounds the other merchants' latency, not the server's throughput.
    # Off by default: it turns a heavy merchant's calls away whenever the loop is past the
    # target, a bulk ingestion's included, and the burst benchmark has not shown it meeting its
    # goal yet (docs/results.md, Tenancy and privacy).
    merchant_cpu_shares: bool = False
    merchant_cpu_target: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.initial_limit <= self.max_limit:
            raise ValueError("[admission] needs 1 <= min_limit <= initial_limit <= max_limit")
        if self.total_limit < self.min_limit or self.queue_size < 0:
            raise ValueError("[admission] total_limit must be at least min_limit, queue_size at least 0")
        if self.tolerance <= 1.0 or not 0.0 < self.backoff < 1.0 or self.window_seconds <= 0:
            raise ValueError("[admission] needs tolerance > 1, 0 < backoff < 1, window_seconds > 0")
        if not 0.0 < self.cpu_target < 1.0 or not 0.0 < self.cpu_max_shed < 1.0 or \
                not 0.0 < self.merchant_cpu_target < 1.0:
            raise ValueError("[admission] needs 0 < cpu_target, merchant_cpu_target, cpu_max_shed < 1")
        if self.cpu_gain <= 0 or self.cpu_window_seconds <= 0:
            raise ValueError("[admission] needs cpu_gain > 0 and cpu_window_seconds > 0")


class Refused(ResourceExhausted):
    """Refused by admission control; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Waiter:
    __slots__ = ("future", "context", "deadline", "since_ns", "merchant")

    def __init__(self, future: asyncio.Future, context: Any, deadline: float, since_ns: int,
                 merchant: bytes | None) -> None:
        self.future = future
        self.context = context
        self.deadline = deadline
        self.since_ns = since_ns
        self.merchant = merchant


class Gate:
    """One RPC's limit, queue and counters. Everything runs on the event loop."""

    __slots__ = ("method", "pool", "limit", "in_flight", "queue", "service_ns", "_min_ns", "_prev_min_ns",
                 "_window_end_ns", "_since_cut", "admitted", "refused", "waited", "wait_ns", "late",
                 "_min", "_max", "_tolerance", "_backoff", "_window_ns", "_queue_size", "timed", "held")

    def __init__(self, method: str, pool: "Admission", config: AdmissionConfig) -> None:
        self.method = method
        self.pool = pool
        self.limit = float(config.initial_limit)
        self._min, self._max = float(config.min_limit), float(config.max_limit)
        self._tolerance, self._backoff = config.tolerance, config.backoff
        self._window_ns = int(config.window_seconds * 1e9)
        self._queue_size = config.queue_size
        self.in_flight = 0
        self.queue: deque[_Waiter] = deque()
        self.service_ns = 0.0  # moving average of admission to handler return
        self._min_ns = self._prev_min_ns = INFINITY
        self._window_end_ns = 0
        self._since_cut = 0
        self.admitted = 0
        self.refused = dict.fromkeys(REASONS, 0)
        self.waited = 0  # calls that queued and were admitted, and their total wait
        self.wait_ns = 0
        self.late = 0  # handler returned after the client's deadline
        self.timed = 0  # calls that came with a deadline
        self.held: dict[bytes, int] = {}  # calls in flight or waiting, per merchant (b"": none named)

    def has_room(self) -> bool:
        pool = self.pool
        return self.in_flight < self.limit and (pool.in_flight < pool.total_limit or self.in_flight < self._min)

    def admit(self, context: Any, merchant: bytes | None = b"") -> asyncio.Future | None:
        """None: admitted, run now. A future: queued, admitted when it resolves (it raises
        Refused when the call is dropped instead). Raises Refused at once when the queue is
        full, the merchant holds its share, or the deadline cannot be met;
        asyncio.CancelledError when the client is gone. `merchant`: whose call it is."""
        if context.done():
            self.refused["cancelled"] += 1
            raise asyncio.CancelledError()
        remaining = context.time_remaining()
        if remaining is not None:
            self.timed += 1
        shed = self.pool.saturation.shed
        if shed and random.random() < shed:
            self._refuse("cpu", f"the CPU is {self.pool.saturation.utilisation:.0%} busy; {shed:.0%} of new "
                                "calls are turned away")
        if self.pool.shares.refuses(merchant):
            self._refuse("merchant_cpu", f"the CPU is {self.pool.saturation.utilisation:.0%} busy and this "
                                         f"merchant's calls take more than an even share of it; "
                                         f"{self.pool.shares.shed:.0%} of them are turned away")
        budget_ns = INFINITY if remaining is None else remaining * 1e9
        queued = len(self.queue)
        if queued == 0 and self.has_room():
            if budget_ns < self.service_ns:
                self._refuse("deadline", f"the deadline leaves {budget_ns / 1e6:.1f} ms; calls take "
                                         f"{self.service_ns / 1e6:.1f} ms here now")
            self.in_flight += 1
            self.pool.in_flight += 1
            self.admitted += 1
            self._hold(merchant)
            return None
        held = self.held
        mine = held.get(merchant, 0)
        busy = len(held) + (0 if mine else 1)
        share = (self.limit + self._queue_size) / busy
        if busy > 1 and mine + 1 > share:  # a lone merchant is bounded by the queue itself
            self._refuse("merchant_share", f"this merchant holds {mine} of the {self.in_flight} calls in flight "
                                           f"and {queued} waiting, its share with {busy} merchants busy")
        if queued >= self._queue_size and not (busy > 1 and self._evict_over_share(share)):
            self._refuse("queue_full", f"{self.in_flight} calls in flight (the limit) and {queued} waiting")
        expected_ns = (queued + 1) * self.service_ns / self.limit + self.service_ns
        if budget_ns < expected_ns:
            self._refuse("deadline", f"the deadline leaves {budget_ns / 1e6:.1f} ms; a call waits and runs "
                                     f"about {expected_ns / 1e6:.1f} ms here now")
        future = asyncio.get_running_loop().create_future()
        deadline = INFINITY if remaining is None else time.monotonic() + remaining
        self.queue.append(_Waiter(future, context, deadline, time.perf_counter_ns(), merchant))
        self.pool.queued += 1
        self._hold(merchant)
        return future

    def _evict_over_share(self, share: float) -> bool:
        """A full queue and a merchant within its share: the newest waiter of a merchant over
        its share is refused in its favour (so the first shop to burst cannot keep the queue)."""
        held = self.held
        for waiter in reversed(self.queue):
            if held.get(waiter.merchant, 0) > share:
                self.queue.remove(waiter)
                self.pool.queued -= 1
                self._drop(waiter.merchant)
                self.refused["merchant_share"] += 1
                if not waiter.future.done():
                    waiter.future.set_exception(Refused("merchant_share", f"overloaded: {self.method} refused (its "
                                                        "merchant held more than its share of the queue while "
                                                        "another merchant waited); retry with backoff"))
                return True
        return False

    def _hold(self, merchant: bytes | None) -> None:
        self.held[merchant] = self.held.get(merchant, 0) + 1

    def _drop(self, merchant: bytes | None) -> None:
        left = self.held.get(merchant, 0) - 1
        if left > 0:
            self.held[merchant] = left
        else:
            self.held.pop(merchant, None)

    def abandon(self, future: asyncio.Future, merchant: bytes | None = b"") -> None:
        """The caller of a queued call is gone (its task was cancelled while it waited)."""
        for waiter in self.queue:
            if waiter.future is future:
                self.queue.remove(waiter)
                self.pool.queued -= 1
                self.refused["cancelled"] += 1
                self._drop(waiter.merchant)
                return
        if future.done() and not future.cancelled() and future.exception() is None:
            self.release(0, 0, merchant=merchant)  # the slot was handed over just before the cancellation

    def release(self, elapsed_ns: int, now_ns: int, late: bool = False, merchant: bytes | None = b"") -> None:
        """An admitted call's handler returned after `elapsed_ns` (0: no sample)."""
        self._drop(merchant)
        in_flight = self.in_flight
        self.in_flight = in_flight - 1
        pool = self.pool
        pool.in_flight -= 1
        if late:
            self.late += 1
        if elapsed_ns > 0:
            self._sample(elapsed_ns, now_ns, in_flight)
            pool.shares.spent(merchant, elapsed_ns)
        if pool.queued:
            pool.dispatch(self)

    def _sample(self, elapsed_ns: int, now_ns: int, in_flight: int) -> None:
        service = self.service_ns
        self.service_ns = elapsed_ns if service == 0.0 else service + (elapsed_ns - service) * SERVICE_WEIGHT
        if now_ns >= self._window_end_ns:
            self._prev_min_ns, self._min_ns = self._min_ns, INFINITY
            self._window_end_ns = now_ns + self._window_ns
        if elapsed_ns < self._min_ns:
            self._min_ns = elapsed_ns
        floor = self._min_ns if self._min_ns < self._prev_min_ns else self._prev_min_ns
        self._since_cut += 1
        limit = self.limit
        if elapsed_ns > floor * self._tolerance:
            # once per round of `limit` calls: the calls of one round all saw the same crowd
            if self._since_cut >= limit:
                self.limit = max(self._min, limit * self._backoff)
                self._since_cut = 0
        elif in_flight * 2 >= limit:  # grow only a limit that is in use
            self.limit = min(self._max, limit + 1.0 / limit)

    def take_waiter(self, now: float) -> None:
        """Admit the head of the queue, or drop it: its client is gone, or its deadline would
        pass before it could finish."""
        waiter = self.queue.popleft()
        self.pool.queued -= 1
        future = waiter.future
        if future.done():
            self._drop(waiter.merchant)
            return
        if waiter.context.done():
            self.refused["cancelled"] += 1
            self._drop(waiter.merchant)
            future.cancel()
            return
        if (waiter.deadline - now) * 1e9 < self.service_ns:
            self.refused["deadline"] += 1
            self._drop(waiter.merchant)
            future.set_exception(Refused("deadline", "the deadline would pass before the call could finish; "
                                                     "it waited for a slot"))
            return
        self.in_flight += 1
        self.pool.in_flight += 1
        self.admitted += 1
        self.waited += 1
        self.wait_ns += time.perf_counter_ns() - waiter.since_ns
        future.set_result(None)

    def _refuse(self, reason: str, detail: str) -> None:
        self.refused[reason] += 1
        raise Refused(reason, f"overloaded: {self.method} refused ({detail}); retry with backoff or elsewhere")


class Admission:
    """The pool every gate draws from."""

    def __init__(self, config: AdmissionConfig) -> None:
        self.config = config
        self.total_limit = config.total_limit
        self.in_flight = 0
        self.queued = 0
        self.gates: dict[str, Gate] = {}
        self.saturation = Saturation(config.cpu_target, config.cpu_gain, config.cpu_max_shed,
                                     config.cpu_window_seconds, shedding=config.cpu_shedding)
        self.shares = MerchantShares(config.merchant_cpu_target, config.cpu_gain, config.cpu_max_shed)
        if config.merchant_cpu_shares:
            self.saturation.listeners.append(self.shares.update)
        self._watch: asyncio.Task | None = None

    def start(self) -> None:
        """Begin watching the CPU (on the running loop), for cpu_shedding or merchant_cpu_shares."""
        if (self.config.cpu_shedding or self.config.merchant_cpu_shares) and self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self.saturation.watch(self.counts))

    def counts(self) -> tuple[int, int, int]:
        """Calls every gate has seen (admitted or refused), those refused for their deadline,
        and those that came with a deadline (calls shed for the CPU are not looked at)."""
        seen = stale = timed = 0
        for gate in self.gates.values():
            refused = gate.refused
            seen += (gate.admitted + refused["cpu"] + refused["merchant_cpu"] + refused["queue_full"]
                     + refused["merchant_share"] + refused["deadline"])
            stale += refused["deadline"]
            timed += gate.timed
        return seen, stale, timed

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def gate(self, method: str) -> Gate:
        gate = self.gates.get(method)
        if gate is None:
            gate = self.gates[method] = Gate(method, self, self.config)
        return gate

    def dispatch(self, first: Gate) -> None:
        """Hand freed slots to waiting calls: the releasing RPC's own first, then the others."""
        now = time.monotonic()
        for gate in (first, *self.gates.values()):
            while gate.queue and gate.has_room():
                gate.take_waiter(now)
            if not self.queued:
                return
