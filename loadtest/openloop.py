"""The load generator: client processes on uvloop that ship pre-serialized requests, open
loop (Poisson or constant arrivals at a target rate, never waiting for answers) or closed loop
(a fixed number of calls outstanding). Latencies go into HDR histograms twice: from the moment
a call was sent, and from the moment it was due (the coordinated-omission correction, which
also shows when the client itself falls behind).

A load may mix several methods (a scenario: each call picks one by weight, each with its own
request bodies); what each kind saw is kept apart, and every measured second's sends, answers
and due-time latencies are kept for the series over time."""
from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
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
    # a scenario: (label, method, bodies, weight) per kind of call; empty: `method` alone
    mix: tuple[tuple[str, str, tuple[bytes, ...], float], ...] = ()
    progress: bool = False  # a progress bar on stderr (the first client process only)
    # CPUs the client processes run on (sched_setaffinity); empty: wherever the OS puts them.
    # On a small machine the server and the load generator otherwise take turns on one core.
    cpus: tuple[int, ...] = ()
    # width of the series' buckets in seconds (a recovery is read at a finer grain than 1 s)
    series_s: float = 1.0
    tls_ca: str = ""  # TLS to the server: the CA certificate (PEM file) that signed its certificate
    api_key: str = ""  # sent as 'authorization: Bearer <key>' with every call

    def kinds(self) -> tuple[tuple[str, str, tuple[bytes, ...], float], ...]:
        return self.mix or ((self.method, self.method, self.requests or (self.request,), 1.0),)

    def __post_init__(self) -> None:
        if self.mode not in ("poisson", "constant", "closed", "h2load"):
            raise ValueError(f"mode must be poisson, constant, closed or h2load, not {self.mode!r}")
        if self.mode in ("poisson", "constant") and self.rate <= 0:
            raise ValueError("rate must be > 0 for an open-loop load")
        if self.duration_s <= 0 or self.processes < 1 or self.concurrency < 1:
            raise ValueError("duration, processes and concurrency must be positive")
        if self.series_s <= 0:
            raise ValueError("series_s must be positive")
        if self.mix and (any(w <= 0 or not bodies for _, _, bodies, w in self.mix)):
            raise ValueError("every kind of a scenario needs a weight > 0 and a request")
        if self.mix and self.mode == "h2load":
            raise ValueError("h2load sends one request; a scenario needs an open or closed loop")


@dataclass
class KindResult:
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: HdrHistogram = field(default_factory=new_histogram)  # from send
    corrected: HdrHistogram = field(default_factory=new_histogram)  # from due time
    # OK answers that came back after the call's deadline had passed (from send): gRPC ends a
    # call at its deadline on the client, so these are rare; the server's own count of work
    # done for callers who had gone is hanzo_admission_late_total / hanzo_rpc_late_total.
    late_ok: int = 0

    def merge(self, other: "KindResult") -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.late_ok += other.late_ok
        for code, n in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n
        self.latency.add(other.latency)
        self.corrected.add(other.corrected)


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    latency: HdrHistogram = field(default_factory=new_histogram)  # from send
    corrected: HdrHistogram = field(default_factory=new_histogram)  # from due time
    late_sends: int = 0  # sent more than 2 ms after due: the client fell behind
    kinds: dict[str, KindResult] = field(default_factory=dict)
    # per measured second (by due time): calls due, answered, failed, and the answered calls'
    # due-time latencies in microseconds
    second_sent: list[int] = field(default_factory=list)
    second_ok: list[int] = field(default_factory=list)
    second_errors: list[int] = field(default_factory=list)
    second_latency_us: list[list[int]] = field(default_factory=list)
    late_ok: int = 0  # OK answers past the deadline (KindResult.late_ok)
    # perf_counter_ns when the first call was due and when the last due time passed: loads
    # run back to back in one process (run_sequence) tell the gap between them
    start_ns: int = 0
    end_ns: int = 0
    # the client process's CPU seconds over the load (all its threads): near elapsed_s per
    # CPU it may use, the load generator itself was the bottleneck and its latencies are its own
    client_cpu_s: float = 0.0

    def ensure_seconds(self, n: int) -> None:
        while len(self.second_sent) < n:
            self.second_sent.append(0)
            self.second_ok.append(0)
            self.second_errors.append(0)
            self.second_latency_us.append([])

    def merge(self, other: "LoadResult") -> None:
        self.sent += other.sent
        self.ok += other.ok
        for code, n in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.latency.add(other.latency)
        self.corrected.add(other.corrected)
        self.late_sends += other.late_sends
        self.late_ok += other.late_ok
        self.client_cpu_s += other.client_cpu_s
        for label, kind in other.kinds.items():
            self.kinds.setdefault(label, KindResult()).merge(kind)
        self.ensure_seconds(len(other.second_sent))
        for i in range(len(other.second_sent)):
            self.second_sent[i] += other.second_sent[i]
            self.second_ok[i] += other.second_ok[i]
            self.second_errors[i] += other.second_errors[i]
            self.second_latency_us[i].extend(other.second_latency_us[i])

    def encode(self) -> dict:
        return {"sent": self.sent, "ok": self.ok, "errors": self.errors, "elapsed_s": self.elapsed_s,
                "latency": self.latency.encode(), "corrected": self.corrected.encode(), "late_sends": self.late_sends,
                "late_ok": self.late_ok,
                "kinds": {label: {"sent": k.sent, "ok": k.ok, "errors": k.errors, "latency": k.latency.encode(),
                                  "corrected": k.corrected.encode(), "late_ok": k.late_ok}
                          for label, k in self.kinds.items()},
                "seconds": [self.second_sent, self.second_ok, self.second_errors, self.second_latency_us],
                "start_ns": self.start_ns, "end_ns": self.end_ns, "client_cpu_s": self.client_cpu_s}

    @classmethod
    def decode(cls, data: dict) -> "LoadResult":
        result = cls(data["sent"], data["ok"], data["errors"], data["elapsed_s"], late_sends=data["late_sends"],
                     late_ok=data.get("late_ok", 0))
        result.latency.add(HdrHistogram.decode(data["latency"]))
        result.corrected.add(HdrHistogram.decode(data["corrected"]))
        for label, k in data["kinds"].items():
            kind = result.kinds[label] = KindResult(k["sent"], k["ok"], k["errors"], late_ok=k.get("late_ok", 0))
            kind.latency.add(HdrHistogram.decode(k["latency"]))
            kind.corrected.add(HdrHistogram.decode(k["corrected"]))
        result.second_sent, result.second_ok, result.second_errors, result.second_latency_us = data["seconds"]
        result.start_ns, result.end_ns = data.get("start_ns", 0), data.get("end_ns", 0)
        result.client_cpu_s = data.get("client_cpu_s", 0.0)
        return result


def _channel(spec: LoadSpec) -> grpc.aio.Channel:
    options = [("grpc.max_receive_message_length", spec.max_message_bytes),
               ("grpc.max_send_message_length", spec.max_message_bytes)]
    if spec.tls_ca:
        with open(spec.tls_ca, "rb") as ca:
            return grpc.aio.secure_channel(spec.url, grpc.ssl_channel_credentials(ca.read()), options=options)
    return grpc.aio.insecure_channel(spec.url, options=options)


class _Sender:
    """One load's calls on a channel: which kind each is, its body, and what it measured."""

    def __init__(self, spec: LoadSpec, channel: grpc.aio.Channel, result: LoadResult, measure_from: int) -> None:
        kinds = spec.kinds()
        self.calls = [channel.unary_unary(method) for _, method, _, _ in kinds]  # bytes in, bytes out
        self.bodies = [list(b) for _, _, b, _ in kinds]
        self.turns = [spec.seed % len(b) for b in self.bodies]
        self.stats = [result.kinds.setdefault(label, KindResult()) for label, _, _, _ in kinds]
        weights = np.array([w for _, _, _, w in kinds], dtype=float)
        # which kind each call is, drawn once: no random draw on the sending path
        self.picks = np.random.default_rng([spec.seed, 7]).choice(
            len(kinds), size=65536, p=weights / weights.sum()).tolist()
        self.pick_at = 0
        self.result = result
        self.timeout = spec.timeout_s
        self.metadata = (("authorization", f"Bearer {spec.api_key}"),) if spec.api_key else None
        self.timeout_ns = int(spec.timeout_s * 1e9)
        self.measure_from = measure_from
        self.bucket_ns = int(spec.series_s * 1e9)
        result.ensure_seconds(int(math.ceil(spec.duration_s / spec.series_s - 1e-9)))

    def next_call(self) -> tuple[int, bytes]:
        """The next call's kind and body."""
        k = self.picks[self.pick_at]
        self.pick_at = (self.pick_at + 1) & 65535
        bodies, turn = self.bodies[k], self.turns[k]
        self.turns[k] = (turn + 1) % len(bodies)
        return k, bodies[turn]

    async def one(self, due: int, record: bool) -> None:
        k, body = self.next_call()
        perf = time.perf_counter_ns
        sent = perf()
        try:
            await self.calls[k](body, timeout=self.timeout, metadata=self.metadata)
            code = None
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        if record:
            self.record(k, code, due, sent, perf())

    def record(self, k: int, code: str | None, due: int, sent: int, done: int) -> None:
        result, kind = self.result, self.stats[k]
        second = min((due - self.measure_from) // self.bucket_ns, len(result.second_sent) - 1)
        result.sent += 1
        kind.sent += 1
        result.second_sent[second] += 1
        if code is None:
            result.ok += 1
            kind.ok += 1
            late_us = max((done - due) // 1000, 1)
            took_us = max((done - sent) // 1000, 1)
            kind.latency.record_value(took_us)
            kind.corrected.record_value(late_us)
            result.second_ok[second] += 1
            result.second_latency_us[second].append(late_us)
            if done - sent > self.timeout_ns:
                result.late_ok += 1
                kind.late_ok += 1
        else:
            result.errors[code] = result.errors.get(code, 0) + 1
            kind.errors[code] = kind.errors.get(code, 0) + 1
            result.second_errors[second] += 1
        if sent - due > 2_000_000:
            result.late_sends += 1


async def _closed(spec: LoadSpec, sender: _Sender, measure_from: int, end: int) -> None:
    async def worker() -> None:
        perf = time.perf_counter_ns
        while True:
            now = perf()
            if now >= end:
                return
            await sender.one(now, now >= measure_from)

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))


async def _open(spec: LoadSpec, sender: _Sender, start: int, measure_from: int, end: int) -> None:
    rng = np.random.default_rng(spec.seed)
    mean_gap_ns = 1e9 / spec.rate
    pending: set[asyncio.Task] = set()
    loop = asyncio.get_running_loop()
    perf = time.perf_counter_ns
    due = start
    while due < end:
        now = perf()
        while due <= now and due < end:
            task = loop.create_task(sender.one(due, due >= measure_from))
            pending.add(task)
            task.add_done_callback(pending.discard)
            gap = rng.exponential(mean_gap_ns) if spec.mode == "poisson" else mean_gap_ns
            due += int(gap)
        wait = (due - perf()) / 1e9
        if wait > 0:
            await asyncio.sleep(wait)
    if pending:  # bounded: every call has its deadline
        await asyncio.wait(pending, timeout=spec.timeout_s + 5)


async def _drive(spec: LoadSpec, channel: grpc.aio.Channel | None = None) -> LoadResult:
    """One load; on `channel` when given (loads back to back), else on a channel of its own."""
    if channel is None:
        async with _channel(spec) as own:
            return await _drive(spec, own)
    await asyncio.wait_for(channel.channel_ready(), 30)
    return await drive_sender(spec, lambda result, measure_from: _Sender(spec, channel, result, measure_from))


async def drive_sender(spec: LoadSpec, make_sender) -> LoadResult:
    """One load through the sender `make_sender(result, measure_from)` makes (a gRPC channel's,
    or loadtest/http_load.py's)."""
    result = LoadResult()
    perf = time.perf_counter_ns
    start = perf()
    cpu_start = time.process_time()
    measure_from = start + int(spec.warmup_s * 1e9)
    end = measure_from + int(spec.duration_s * 1e9)
    sender = make_sender(result, measure_from)
    result.start_ns, result.end_ns = start, end
    bar = _progress(spec, start) if spec.progress else None
    if spec.mode == "closed":
        await _closed(spec, sender, measure_from, end)
    else:
        await _open(spec, sender, start, measure_from, end)
    if bar is not None:
        bar.cancel()
    for kind in sender.stats:  # the whole load's histograms: its kinds' together
        result.latency.add(kind.latency)
        result.corrected.add(kind.corrected)
    result.elapsed_s = (min(perf(), end) - measure_from) / 1e9 if spec.mode != "closed" else spec.duration_s
    result.client_cpu_s = round(time.process_time() - cpu_start, 3)
    return result


def _progress(spec: LoadSpec, start_ns: int) -> asyncio.Task:
    """A tqdm bar over the run's seconds (warm-up included), ticking on the client's loop."""
    from tqdm import tqdm

    total = spec.warmup_s + spec.duration_s

    async def tick() -> None:
        with tqdm(total=round(total, 1), unit="s", desc=f"{spec.mode} load", leave=False,
                  bar_format="{desc}: {bar} {n:.0f}/{total:.0f} s") as bar:
            while True:
                await asyncio.sleep(1.0)
                bar.n = min(round((time.perf_counter_ns() - start_ns) / 1e9, 1), total)
                bar.refresh()

    return asyncio.get_running_loop().create_task(tick())


@contextlib.contextmanager
def pinned(cpus: tuple[int, ...]) -> Iterator[None]:
    """This process on `cpus` while inside (nothing when empty), then back where it was.
    Every thread is moved, not only the calling one: gRPC's own threads do the client's I/O."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    _set_affinity(cpus)
    try:
        yield
    finally:
        _set_affinity(tuple(before))


def _set_affinity(cpus: tuple[int, ...]) -> None:
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)


def parse_cpus(text: str | None) -> tuple[int, ...]:
    """"1", "1,3" or "2-3" (as taskset -c takes them) as CPU numbers this machine has; a
    ValueError naming the CPUs that are not there."""
    if not text or not text.strip():
        return ()
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            cpus.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise ValueError(f"CPUs as taskset -c takes them (e.g. 1 or 1,3 or 2-3), not {text!r}") from None
    missing = cpus - os.sched_getaffinity(0)
    if missing or not cpus:
        raise ValueError(f"CPU(s) {sorted(missing) or text} not available here (this process may use "
                         f"{sorted(os.sched_getaffinity(0))})")
    return tuple(sorted(cpus))


def _worker(spec: LoadSpec, out) -> None:
    with pinned(spec.cpus):
        out.put(uvloop.run(_drive(spec)).encode())


def run_load(spec: LoadSpec) -> LoadResult:
    """Run `spec` across its client processes and merge what they measured."""
    if spec.processes == 1:
        with pinned(spec.cpus):
            return uvloop.run(_drive(spec))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    shares = []
    per_process, extra = divmod(spec.concurrency, spec.processes)
    for i in range(spec.processes):
        share = replace(spec, seed=spec.seed * 1000 + i, processes=1, rate=spec.rate / spec.processes,
                        concurrency=max(1, per_process + (i < extra)), progress=spec.progress and i == 0)
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


def run_sequence(specs: list[LoadSpec]) -> list[LoadResult]:
    """Loads back to back on one channel in this one process (an overload, then what follows
    it): the next starts as soon as the last calls of the one before have their answers or
    their deadlines. Every spec must name the same URL and one process."""
    if any(s.processes != 1 or s.url != specs[0].url for s in specs):
        raise ValueError("loads in sequence share one client process and one server")

    async def drive() -> list[LoadResult]:
        async with _channel(specs[0]) as channel:
            return [await _drive(spec, channel) for spec in specs]

    with pinned(specs[0].cpus):
        return uvloop.run(drive())
