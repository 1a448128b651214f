"""Admission control: the adaptive limit, the queue's refusals, dropped callers, one RPC's
burst against another's calls, and a real server under overload with short deadlines."""
from __future__ import annotations

import asyncio
import random
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from hanzo.server.api.admission import Admission, AdmissionConfig, Refused
from hanzo.server.api.edge import Edge
from hanzo.server.api.latency import LatencyRecorder
from hanzo.server.api.saturation import Saturation, usable_cpus

MS = 1_000_000


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, text: str) -> None:
        super().__init__(code, text)
        self.code = code


class FakeContext:
    """What the edge asks of a call's context; `gone` is the client having left."""

    def __init__(self, remaining: float | None = None) -> None:
        self.remaining = remaining
        self.gone = False

    def done(self) -> bool:
        return self.gone

    def cancelled(self) -> bool:
        return self.gone

    def time_remaining(self) -> float | None:
        return self.remaining

    def add_done_callback(self, callback) -> None:
        pass

    async def abort(self, code: grpc.StatusCode, text: str) -> None:
        raise Aborted(code, text)


def config(**options) -> AdmissionConfig:
    base = dict(initial_limit=8, min_limit=2, max_limit=16, total_limit=64, queue_size=4, window_seconds=60.0)
    return AdmissionConfig(**{**base, **options})


def run_rounds(gate, latency_ns: int, calls: int, clock: list[int]) -> None:
    """Keep the gate full: each finished call is replaced by a new one."""
    while gate.in_flight < int(gate.limit):
        assert gate.admit(FakeContext()) is None
    for _ in range(calls):
        clock[0] += MS
        gate.release(latency_ns, clock[0])
        while gate.in_flight < int(gate.limit):
            assert gate.admit(FakeContext()) is None


def test_the_limit_grows_while_latency_stays_near_the_floor_up_to_its_bound():
    gate = Admission(config()).gate("/a")
    clock = [0]
    run_rounds(gate, 1 * MS, 40, clock)
    assert gate.limit > 10
    run_rounds(gate, 1 * MS, 2000, clock)
    assert gate.limit == 16


def test_the_limit_is_cut_when_latency_rises_down_to_its_bound():
    gate = Admission(config()).gate("/a")
    clock = [0]
    run_rounds(gate, 1 * MS, 20, clock)
    before = gate.limit
    run_rounds(gate, 5 * MS, 20, clock)
    assert gate.limit < before
    run_rounds(gate, 5 * MS, 2000, clock)
    assert gate.limit == 2


def test_an_idle_limit_does_not_grow():
    gate = Admission(config()).gate("/a")
    for i in range(1000):
        assert gate.admit(FakeContext()) is None
        gate.release(MS, i * MS)
    assert gate.limit == 8


def test_a_call_whose_deadline_cannot_be_met_is_refused_at_once_and_a_full_queue_refuses():
    async def scenario():
        gate = Admission(config(initial_limit=2, min_limit=1, max_limit=2)).gate("/a")
        for i in range(4):  # calls take 10 ms here now
            gate.admit(FakeContext())
            gate.release(10 * MS, i * MS)
        held = [gate.admit(FakeContext()) for _ in range(2)]
        assert held == [None, None]
        with pytest.raises(Refused) as info:  # 5 ms left: less than the wait and the call itself
            gate.admit(FakeContext(remaining=0.005))
        assert info.value.reason == "deadline" and info.value.code == "RESOURCE_EXHAUSTED"
        waiting = [gate.admit(FakeContext(remaining=10.0)) for _ in range(4)]
        assert all(isinstance(w, asyncio.Future) for w in waiting)
        with pytest.raises(Refused) as info:
            gate.admit(FakeContext())
        assert info.value.reason == "queue_full"
        assert gate.refused == {"cpu": 0, "merchant_cpu": 0, "queue_full": 1, "merchant_share": 0, "deadline": 1,
                                "cancelled": 0}
        gate.release(10 * MS, 10 * MS)  # a slot frees: the first waiter goes in
        assert waiting[0].done() and not waiting[1].done() and len(gate.queue) == 3

    asyncio.run(scenario())


def test_with_a_free_slot_a_deadline_shorter_than_a_call_is_refused():
    gate = Admission(config()).gate("/a")
    gate.admit(FakeContext())
    gate.release(20 * MS, 0)
    with pytest.raises(Refused):
        gate.admit(FakeContext(remaining=0.001))
    assert gate.admit(FakeContext(remaining=1.0)) is None


async def _serve(edge: Edge, method: str, calls: list[tuple[FakeContext, bytes]], handler):
    wrapped = edge.wrap(method, handler, request_class=_Request)
    results = []

    async def one(context, body):
        try:
            results.append(await wrapped(body, context))
        except Aborted as exc:
            results.append(exc.code)

    tasks = [asyncio.ensure_future(one(c, b)) for c, b in calls]
    return tasks, results


class _Request:
    """A stand-in for a message class: decoding counts itself."""

    decoded = 0
    DESCRIPTOR = type("D", (), {"full_name": "test.Request"})

    @classmethod
    def FromString(cls, body: bytes) -> "_Request":
        cls.decoded += 1
        return cls()


def test_a_waiting_caller_that_has_gone_is_dropped_before_it_runs_and_never_decoded():
    async def scenario():
        admission = Admission(config(initial_limit=1, min_limit=1))
        edge = Edge(LatencyRecorder(), admission=admission)
        release = asyncio.Event()
        ran = []

        async def handler(request, context):
            ran.append(context)
            await release.wait()
            return "ok"

        first, leaving, cancelled, last = (FakeContext(10.0) for _ in range(4))
        _Request.decoded = 0
        tasks, results = await _serve(edge, "/a", [(first, b""), (leaving, b""), (cancelled, b""), (last, b"")],
                                      handler)
        await asyncio.sleep(0.01)
        assert ran == [first] and len(admission.gates["/a"].queue) == 3 and _Request.decoded == 1
        leaving.gone = True  # its client went away while it waited
        tasks[2].cancel()  # gRPC cancels a call's task when its client goes
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert ran == [first, last] and _Request.decoded == 2
        gate = admission.gates["/a"]
        assert gate.refused["cancelled"] == 2 and gate.in_flight == 0 and admission.in_flight == 0
        assert results.count("ok") == 2

    asyncio.run(scenario())


def test_a_burst_on_one_rpc_does_not_starve_another():
    async def scenario():
        admission = Admission(config(initial_limit=16, max_limit=16, min_limit=2, total_limit=16, queue_size=64))
        edge = Edge(LatencyRecorder(), admission=admission)
        release = asyncio.Event()

        async def slow(request, context):
            await release.wait()
            return "slow"

        async def quick(request, context):
            return "quick"

        burst, burst_results = await _serve(edge, "/burst", [(FakeContext(), b"") for _ in range(40)], slow)
        await asyncio.sleep(0.01)
        assert admission.in_flight == 16 and len(admission.gates["/burst"].queue) == 24
        other, other_results = await _serve(edge, "/other", [(FakeContext(), b"") for _ in range(5)], quick)
        await asyncio.gather(*other)
        assert other_results == ["quick"] * 5  # within its reserved slots, while the burst holds the total
        release.set()
        await asyncio.gather(*burst)
        assert burst_results == ["slow"] * 40

    asyncio.run(scenario())


def test_a_refusal_comes_before_decoding():
    async def scenario():
        admission = Admission(config(initial_limit=1, min_limit=1, queue_size=0))
        edge = Edge(LatencyRecorder(), admission=admission)
        release = asyncio.Event()

        async def handler(request, context):
            await release.wait()
            return "ok"

        _Request.decoded = 0
        tasks, results = await _serve(edge, "/a", [(FakeContext(), b"") for _ in range(3)], handler)
        await asyncio.sleep(0.01)
        assert results == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2 and _Request.decoded == 1
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_the_configuration_is_checked():
    with pytest.raises(ValueError):
        AdmissionConfig(min_limit=64, initial_limit=32)
    with pytest.raises(ValueError):
        AdmissionConfig(tolerance=1.0)
    for bad in (dict(cpu_target=1.0), dict(cpu_max_shed=0.0), dict(cpu_gain=0.0), dict(cpu_window_seconds=0)):
        with pytest.raises(ValueError):
            AdmissionConfig(**bad)


def test_the_shed_share_follows_the_cpu_up_and_back_down():
    saturation = Saturation(target=0.9, gain=0.5, max_shed=0.95, window_seconds=0.05)
    busy = (0.05 * usable_cpus(), 0.05, 0.05)  # every CPU and the loop's thread busy the whole window
    for _ in range(4):
        saturation.update(*busy)
    assert saturation.utilisation == pytest.approx(1.0)
    assert saturation.shed == pytest.approx(4 * 0.5 * 0.1)
    for _ in range(40):
        saturation.update(*busy)
    assert saturation.shed == 0.95  # capped: some calls always get through
    saturation.update(0.0, 0.45 * 0.05, 0.05)  # the loop at 45%: far below the target, down fast
    assert saturation.shed == pytest.approx(0.95 - 0.5 * 0.45)
    for _ in range(3):
        saturation.update(0.0, 0.0, 0.05)
    assert saturation.shed == 0.0 and saturation.windows_over == 44


def test_the_loop_thread_alone_saturates_a_server_with_many_cores():
    saturation = Saturation(target=0.9, gain=0.5, max_shed=0.95, window_seconds=0.05)
    saturation._cpus = 16
    saturation.update(0.05 * 1.2, 0.0495, 0.05)  # the process uses 1.2 of 16 CPUs, the loop 99%
    assert saturation.utilisation == pytest.approx(0.99) and saturation.shed > 0


def test_stale_arrivals_count_as_overload_only_on_a_busy_cpu():
    saturation = Saturation(target=0.9, gain=0.5, max_shed=0.95, window_seconds=0.05)
    saturation._cpus = 1
    saturation.update(0.05 * 0.85, 0.0, 0.05, stale=0.3)  # 85%: under the target, yet calls arrive spent
    assert saturation.shed == pytest.approx(0.5 * 0.05)
    saturation.update(0.05 * 0.85, 0.0, 0.05, stale=0.01)  # a few: noise, not a queue
    assert saturation.shed == pytest.approx(0.5 * 0.05 - 0.5 * 0.05)
    saturation.update(0.05 * 0.2, 0.0, 0.05, stale=1.0)  # one client's short deadlines on an idle server
    assert saturation.shed == 0.0


def test_without_deadlines_a_busy_cpu_sheds_nothing():
    # a closed-loop benchmark or batch job: nobody is hurt by a queue, so the throughput stays
    saturation = Saturation(target=0.9, gain=0.5, max_shed=0.95, window_seconds=0.05)
    saturation._cpus = 1
    saturation.update(0.05, 0.05, 0.05, deadlines=False)
    assert saturation.utilisation == pytest.approx(1.0) and saturation.shed == 0.0
    saturation.update(0.05, 0.05, 0.05)
    assert saturation.shed > 0
    shed = saturation.shed
    saturation.update(0.05, 0.05, 0.05, deadlines=False)  # the share already shed is kept...
    assert saturation.shed == shed
    saturation.update(0.0, 0.0, 0.05, deadlines=False)  # ...and falls with the CPU
    assert saturation.shed == 0.0


def test_while_shedding_a_share_of_new_calls_is_refused_with_reason_cpu():
    random.seed(17)
    admission = Admission(config())
    gate = admission.gate("/m")
    admission.saturation.shed = 0.5
    admission.saturation.utilisation = 0.97
    refused = 0
    for _ in range(400):
        try:
            if gate.admit(FakeContext()) is None:
                gate.release(MS, MS)
        except Refused as exc:
            assert exc.reason == "cpu" and "CPU is 97% busy" in exc.message
            refused += 1
    assert 140 < refused < 260 and gate.refused["cpu"] == refused
    assert admission.counts() == (400, 0, 0)
    admission.saturation.shed = 0.0
    assert gate.admit(FakeContext(remaining=5.0)) is None
    assert admission.counts() == (401, 0, 1)


def test_the_cpu_watch_runs_on_the_loop_and_stops():
    async def scenario() -> None:
        admission = Admission(config(cpu_shedding=True, cpu_window_seconds=0.01))
        admission.start()
        for _ in range(30):  # the loop's thread busy: the watch sees it
            if admission.saturation.utilisation > 0.5:
                break
            end = time.perf_counter() + 0.02
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)
        assert admission.saturation.utilisation > 0.5
        admission.stop()
        admission.stop()
        off = Admission(config())  # off by default
        off.start()
        assert off._watch is None
        measured = Admission(config(merchant_cpu_shares=True))  # merchants' shares watch the CPU, shedding no one
        measured.start()
        assert measured._watch is not None and not measured.saturation.shedding
        measured.stop()

    asyncio.run(scenario())


@pytest.mark.slow
def test_overload_with_short_deadlines_is_refused_quickly_not_timed_out(tmp_path, server_process):
    from helpers import SLOW_WIDTH, slow_config, slow_model
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from hanzo.loadtest.targets import free_port
    from hanzo.training.repository_writer import write_version

    root = tmp_path / "model_repo"
    write_version(root, slow_config(name="slow", max_batch_size=4), 1, slow_model())
    settings = Path(tmp_path / "hanzo.toml")
    settings.write_text("[admission]\ninitial_limit = 4\nmin_limit = 2\nmax_limit = 8\nqueue_size = 8\n")
    metrics_port = free_port()
    server = server_process(root, "--no-demo-models", "--config", str(settings), "--metrics-port", str(metrics_port))
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.url))
    request = service_pb2.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=[1, SLOW_WIDTH])
    request.raw_input_contents.append(np.ones((1, SLOW_WIDTH), np.float32).tobytes())
    stub.ModelInfer(request, timeout=30)  # warm

    started = time.perf_counter()
    unloaded = [stub.ModelInfer(request, timeout=30) for _ in range(5)]
    service_s = (time.perf_counter() - started) / len(unloaded)
    deadline_s = max(0.1, 4 * service_s)
    # open loop, several times what the model can do, for about 2 s
    interval_s = service_s / 8
    outcomes: list[tuple[str, float]] = []
    pending = []
    begin = time.perf_counter()
    for i in range(int(2.0 / interval_s)):
        while time.perf_counter() < begin + i * interval_s:
            time.sleep(interval_s / 4)
        sent = time.perf_counter()
        future = stub.ModelInfer.future(request, timeout=deadline_s)
        future.add_done_callback(lambda f, sent=sent: outcomes.append(
            (f.code().name, time.perf_counter() - sent)))
        pending.append(future)
    for future in pending:
        try:
            future.result()
        except grpc.RpcError:
            pass
    codes = [code for code, _ in outcomes]
    refused = [elapsed for code, elapsed in outcomes if code == "RESOURCE_EXHAUSTED"]
    summary = {code: codes.count(code) for code in set(codes)}
    assert codes.count("OK") > 0 and len(refused) > len(codes) / 3, summary
    # overload reaches the client as refusals, well before the deadline, not as timeouts
    assert codes.count("DEADLINE_EXCEEDED") < len(refused) / 4, summary
    assert sorted(refused)[len(refused) // 2] < deadline_s / 2, summary
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}, summary
    # the server saw few calls through whose client had already given up
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    late = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("hanzo_admission_late_total{"))
    assert late <= codes.count("DEADLINE_EXCEEDED") + len(codes) / 100, (late, summary)


def test_the_refusal_cost_benchmark_runs():
    from hanzo.loadtest.admission_bench import main

    report = main(["--calls", "400", "--grpc-calls", "64"])
    assert report["grpc_served_codes"] == {"OK": 64}
    assert report["grpc_refused_codes"] == {"RESOURCE_EXHAUSTED": 64}


@pytest.mark.skipif(not __import__("hanzo.loadtest.h2load").loadtest.h2load.available(),
                    reason="h2load is not installed (apt-get install nghttp2-client)")
def test_the_call_cost_benchmark_answers_and_refuses_as_it_says():
    from hanzo.loadtest.call_cost import main

    cpus = sorted(__import__("os").sched_getaffinity(0))
    report = main(["--seconds", "0.5", "--server-cpu", str(cpus[0]), "--client-cpu", str(cpus[-1])])
    modes = report["modes"]
    assert {mode: entry["code"] for mode, entry in modes.items()} == {
        "served": "OK", "refused_by_handler": "RESOURCE_EXHAUSTED", "refused_by_grpc_limit": "RESOURCE_EXHAUSTED"}
    assert all(entry["done"] > 0 and entry["us_per_call"] > 0 for entry in modes.values())


def test_a_merchants_burst_fills_the_queue_only_to_its_share_and_another_still_gets_in():
    async def scenario():
        admission = Admission(config(initial_limit=4, max_limit=4, min_limit=2, total_limit=64, queue_size=8))
        gate = admission.gate("/hanzo.v1.Commerce/Recommend")
        ctx = FakeContext
        for _ in range(4):  # a lone merchant may take every slot and the whole queue
            assert gate.admit(ctx(), b"shop-a") is None
        waiting = [gate.admit(ctx(), b"shop-a") for _ in range(8)]
        assert all(w is not None for w in waiting)
        # the queue is full of shop-a's calls: shop-b's takes the place of shop-a's newest
        taken = gate.admit(ctx(), b"shop-b")
        assert taken is not None and gate.refused["merchant_share"] == 1
        with pytest.raises(Refused) as evicted:
            waiting[-1].result()
        assert evicted.value.reason == "merchant_share"
        assert gate.held == {b"shop-a": 11, b"shop-b": 1}
        taken.cancel()
        gate.abandon(taken, b"shop-b")
        waiting = waiting[:-1]
        assert gate.held == {b"shop-a": 11}
        for _ in range(5):  # shop-a's calls finish; others of its own wait their turn
            gate.release(MS, MS, merchant=b"shop-a")
        assert gate.held == {b"shop-a": 11 - 5}
        # shop-b's call queues (it holds nothing); then shop-a, holding 6 of (4 + 8) / 2 merchants
        # = 6, may not queue another while shop-b is busy
        assert gate.admit(ctx(), b"shop-b") is not None
        with pytest.raises(Refused) as share:
            gate.admit(ctx(), b"shop-a")
        assert share.value.reason == "merchant_share" and gate.refused["merchant_share"] == 2
        assert gate.held == {b"shop-a": 6, b"shop-b": 1}
        for w in waiting:
            w.cancel()

    asyncio.run(scenario())


def test_the_edge_reads_the_merchant_off_the_undecoded_body():
    from hanzo.server.api.edge import merchant_peek
    from hanzo.v1 import commerce_pb2

    body = commerce_pb2.RecommendRequest(merchant_id="shop-a", user_id="u", k=3).SerializeToString()
    assert merchant_peek(body) == b"shop-a"
    assert merchant_peek(commerce_pb2.RecommendRequest(user_id="u").SerializeToString()) == b""
    long = commerce_pb2.RecommendRequest(merchant_id="m" * 300).SerializeToString()
    assert merchant_peek(long) == b"m" * 64
    # a merchant_id given twice is read as a decoder reads it (the last), fields in any order
    twice = body + commerce_pb2.RecommendRequest(merchant_id="shop-b").SerializeToString()
    assert merchant_peek(twice) == b"shop-b" == commerce_pb2.RecommendRequest.FromString(twice).merchant_id.encode()
    late = commerce_pb2.RecommendRequest(user_id="u").SerializeToString() + \
        commerce_pb2.RecommendRequest(merchant_id="shop-c").SerializeToString()
    assert merchant_peek(late) == b"shop-c" and merchant_peek(b"\x0a\xff") == b""


def test_merchant_cpu_shares_refuse_only_the_heavy_merchant_and_only_while_busy():
    from hanzo.server.api.merchant_shares import MerchantShares

    shares = MerchantShares(target=0.5, gain=0.5, max_shed=0.95)
    for _ in range(30):  # one shop alone, however busy: never refused
        shares.spent(b"", 1_000_000)
        shares.update(0.99)
    assert shares.shed == 0.0 and not shares.heavy
    for _ in range(30):  # a second shop bursting: the heavy one is refused while the CPU is past the target
        shares.spent(b"", 100_000)
        shares.spent(b"shop-a", 2_000_000)
        shares.update(0.9)
    assert shares.heavy == {b"shop-a"} and shares.shed > 0.5
    assert not shares.refuses(b"")
    assert sum(shares.refuses(b"shop-a") for _ in range(1000)) > 400
    for _ in range(30):  # the CPU back under the target: the share falls to nothing
        shares.spent(b"", 100_000)
        shares.spent(b"shop-a", 2_000_000)
        shares.update(0.3)
    assert shares.shed == 0.0
    for _ in range(60):  # the burst over: shop-a's share fades and nobody is heavy
        shares.spent(b"", 100_000)
        shares.update(0.9)
    assert not shares.heavy
    for _ in range(60):  # two shops about even, and KServe calls (no merchant): nobody is heavy
        shares.spent(b"", 1_000_000)
        shares.spent(b"shop-a", 1_100_000)
        shares.spent(None, 5_000_000)
        shares.update(0.99)
    assert not shares.heavy and shares.shed == 0.0 and not shares.refuses(None)
