"""The load generator: client processes on uvloop that ship pre-serialized requests, open
loop (Poisson or constant arrivals at a target rate, never waiting for answers) or closed loop
(a fixed number of calls outstanding). Latencies go into HDR histograms twice: from the moment
a call was sent, and from the moment it was due (the coordinated-omission correction, which
also shows when the client itself falls behind)."""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass, field, replace

import grpc
import numpy as np
import uvloop
from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 60_000_000, 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


@dataclass(frozen=True)
class LoadSpec:
    url: str
    method: str
    request: bytes
    mode: str = "poisson"  # poisson | constant | closed | h2load
    requests: tuple[bytes, ...] = ()  # several bodies sent in turn (realistic ids); default: request
    rate: float = 500.0  # requests/s in all, open loop
    concurrency: int = 1  # calls outstanding in all, closed loop
    duration_s: float = 10.0
    warmup_s: float = 2.0
    timeout_s: float = 5.0
    processes: int = 1
    seed: int = 0
    max_message_bytes: int = 64 * 1024 * 1024
    h2_clients: int = 4  # h2load: connections
    h2_streams: int = 8  # h2load: concurrent streams per connection

    def __post_init__(self) -> None:
        if self.mode not in ("poisson", "constant", "closed", "h2load"):
            raise ValueError(f"mode must be poisson, constant, closed or h2load, not {self.mode!r}")
        if self.mode in ("poisson", "constant") and self.rate <= 0:
            raise ValueError("rate must be > 0 for an open-loop load")
        if self.duration_s <= 0 or self.processes < 1 or self.concurrency < 1:
            raise ValueError("duration, processes and concurrency must be positive")


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    latency: HdrHistogram = field(default_factory=new_histogram)  # from send
    corrected: HdrHistogram = field(default_factory=new_histogram)  # from due time
    late_sends: int = 0  # sent more than 2 ms after due: the client fell behind

    def merge(self, other: "LoadResult") -> None:
        self.sent += other.sent
        self.ok += other.ok
        for code, n in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.latency.add(other.latency)
        self.corrected.add(other.corrected)
        self.late_sends += other.late_sends

    def encode(self) -> dict:
        return {"sent": self.sent, "ok": self.ok, "errors": self.errors, "elapsed_s": self.elapsed_s,
                "latency": self.latency.encode(), "corrected": self.corrected.encode(), "late_sends": self.late_sends}

    @classmethod
    def decode(cls, data: dict) -> "LoadResult":
        result = cls(data["sent"], data["ok"], data["errors"], data["elapsed_s"], late_sends=data["late_sends"])
        result.latency.add(HdrHistogram.decode(data["latency"]))
        result.corrected.add(HdrHistogram.decode(data["corrected"]))
        return result


async def _drive(spec: LoadSpec) -> LoadResult:
    options = [("grpc.max_receive_message_length", spec.max_message_bytes),
               ("grpc.max_send_message_length", spec.max_message_bytes)]
    result = LoadResult()
    async with grpc.aio.insecure_channel(spec.url, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        call = channel.unary_unary(spec.method)  # bytes in, bytes out
        perf = time.perf_counter_ns
        latency, corrected, errors = result.latency, result.corrected, result.errors
        bodies, timeout = spec.requests or (spec.request,), spec.timeout_s
        turn = [spec.seed % len(bodies)]

        async def one(due: int, record: bool) -> None:
            body = bodies[turn[0]]
            turn[0] = (turn[0] + 1) % len(bodies)
            sent = perf()
            try:
                await call(body, timeout=timeout)
                code = None
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            done = perf()
            if record:
                result.sent += 1
                if code is None:
                    result.ok += 1
                    latency.record_value(max((done - sent) // 1000, 1))
                    corrected.record_value(max((done - due) // 1000, 1))
                else:
                    errors[code] = errors.get(code, 0) + 1
                if sent - due > 2_000_000:
                    result.late_sends += 1

        start = perf()
        measure_from = start + int(spec.warmup_s * 1e9)
        end = measure_from + int(spec.duration_s * 1e9)
        if spec.mode == "closed":
            async def worker() -> None:
                while True:
                    now = perf()
                    if now >= end:
                        return
                    await one(now, now >= measure_from)

            await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
        else:
            rng = np.random.default_rng(spec.seed)
            mean_gap_ns = 1e9 / spec.rate
            pending: set[asyncio.Task] = set()
            loop = asyncio.get_running_loop()
            due = start
            while due < end:
                now = perf()
                while due <= now and due < end:
                    task = loop.create_task(one(due, due >= measure_from))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    gap = rng.exponential(mean_gap_ns) if spec.mode == "poisson" else mean_gap_ns
                    due += int(gap)
                wait = (due - perf()) / 1e9
                if wait > 0:
                    await asyncio.sleep(wait)
            if pending:
                await asyncio.wait(pending, timeout=spec.timeout_s + 5)
        result.elapsed_s = (min(perf(), end) - measure_from) / 1e9 if spec.mode != "closed" else spec.duration_s
    return result


def _worker(spec: LoadSpec, out) -> None:
    out.put(uvloop.run(_drive(spec)).encode())


def run_load(spec: LoadSpec) -> LoadResult:
    """Run `spec` across its client processes and merge what they measured."""
    if spec.processes == 1:
        return uvloop.run(_drive(spec))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    shares = []
    per_process, extra = divmod(spec.concurrency, spec.processes)
    for i in range(spec.processes):
        share = replace(spec, seed=spec.seed * 1000 + i, processes=1, rate=spec.rate / spec.processes,
                        concurrency=max(1, per_process + (i < extra)))
        shares.append(ctx.Process(target=_worker, args=(share, out), daemon=True))
    for proc in shares:
        proc.start()
    merged = LoadResult()
    deadline = spec.warmup_s + spec.duration_s + spec.timeout_s + 60
    for _ in shares:
        merged.merge(LoadResult.decode(out.get(timeout=deadline)))
    for proc in shares:
        proc.join(10)
    return merged
