"""How busy the server's CPU is, and the share of new calls to turn away so it stays below a
target.

Why CPU and not latency alone: under overload a grpc.aio server's calls wait in gRPC's own
queue of calls not yet handed to Python, before any handler or gate sees them. The gate then
sees only a deadline already spent, and the latencies it measures stay small. The one signal
that rises with that hidden queue is the CPU: the queue grows exactly when the process has no
time left. Keeping a little headroom keeps that queue empty, so the calls taken in are fresh.

Utilisation is the larger of the process's CPU time over the CPUs it may run on and the event
loop thread's own CPU time (the loop is the bottleneck on a machine with many cores), over
short windows. Every window the shed share moves by `gain` times the distance from `target`:
up while the CPU is above it, down (faster the further below) when it has room again.

Only calls that carry a deadline are hurt by that queue: a window in which none did never
raises the share, so a closed-loop benchmark or a batch job without deadlines keeps the
server's whole throughput."""
from __future__ import annotations

import asyncio
import os
import time
from typing import Callable


def usable_cpus() -> int:
    """CPUs this process may run on (taskset, cgroup cpusets), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# A window whose calls are more than STALE_SHARE stale counts as over the target by at least
# STALE_STEP, when the CPU is within STALE_MARGIN of the target.
STALE_SHARE = 0.02
STALE_STEP = 0.05
STALE_MARGIN = 0.1


class Saturation:
    """The shed share, updated by `watch()` on the event loop; read on every call."""

    def __init__(self, target: float, gain: float, max_shed: float, window_seconds: float,
                 shedding: bool = True) -> None:
        self.target, self.gain, self.max_shed, self.window_seconds = target, gain, max_shed, window_seconds
        self.shedding = shedding  # off: only measured (for merchant_shares), nobody's calls turned away
        self.listeners: list[Callable[[float], None]] = []  # told each window's event loop utilisation
        self.shed = 0.0
        self.utilisation = 0.0
        self.windows_over = 0  # windows that ended above the target (a counter for metrics)
        self._cpus = usable_cpus()

    def update(self, process_s: float, thread_s: float, wall_s: float, stale: float = 0.0,
               deadlines: bool = True) -> None:
        """One window's CPU times (process, loop thread) over `wall_s` seconds; the share of the
        window's calls that arrived with their deadline already too short to serve, and whether
        any of them carried a deadline at all."""
        if wall_s <= 0:
            return
        used = max(process_s / (wall_s * self._cpus), thread_s / wall_s)
        self.utilisation = used
        over = used - self.target
        if stale > STALE_SHARE and used > self.target - STALE_MARGIN:
            # calls that waited out their deadline in gRPC's queue: it is not empty, whatever
            # the CPU says in this window; never on an idle CPU, so no one client's short
            # deadlines can turn the others away
            over = max(over, STALE_STEP)
        if not deadlines:
            over = min(over, 0.0)
        if over > 0:
            self.windows_over += 1
        if self.shedding:
            self.shed = min(self.max_shed, max(0.0, self.shed + self.gain * over))
        for listener in self.listeners:
            listener(thread_s / wall_s)

    async def watch(self, counts: Callable[[], tuple[int, int, int]]) -> None:
        """Run until cancelled, in the event loop's thread (its CPU time is the loop's).
        `counts()`: calls seen so far, those of them refused for a deadline too short, and
        those that carried a deadline."""
        wall, process, thread = time.monotonic(), time.process_time(), time.thread_time()
        seen, stale, timed = counts()
        while True:
            await asyncio.sleep(self.window_seconds)
            now, p, t = time.monotonic(), time.process_time(), time.thread_time()
            seen_now, stale_now, timed_now = counts()
            share = (stale_now - stale) / (seen_now - seen) if seen_now > seen else 0.0
            self.update(p - process, t - thread, now - wall, share, timed_now > timed)
            wall, process, thread, seen, stale, timed = now, p, t, seen_now, stale_now, timed_now
