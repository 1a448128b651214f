"""The load harness's overload figures, without a server: goodput and the failures' codes in a
phase, OK answers past their deadline, CPU pinning, the admission counters read off a scrape,
and what the overload benchmark concludes (capacity steps, recovery, the issue's goals); and
the edge's count of calls that returned after their deadline with admission control off."""
from __future__ import annotations

import asyncio
import os

import pytest

from hanzo.loadtest import scrape
from hanzo.loadtest.openloop import KindResult, LoadResult, LoadSpec, _Sender, parse_cpus, pinned
from hanzo.loadtest.overload_figures import goals, recovery, step_passes
from hanzo.loadtest.runner import _phase, failure_shares

MS = 1_000_000


def test_failure_shares_always_name_the_two_codes_of_an_overload():
    assert failure_shares({}) == {}
    assert failure_shares({"RESOURCE_EXHAUSTED": 9, "UNAVAILABLE": 1}) == {
        "RESOURCE_EXHAUSTED": 0.9, "DEADLINE_EXCEEDED": 0.0, "UNAVAILABLE": 0.1}


def test_a_phase_reports_goodput_against_the_offered_rate_and_the_failures_codes():
    result = LoadResult(sent=100, ok=60, errors={"RESOURCE_EXHAUSTED": 30, "DEADLINE_EXCEEDED": 10}, elapsed_s=2.0,
                        late_ok=2)
    result.kinds["Recommend"] = KindResult(100, 60, dict(result.errors), late_ok=2)
    result.ensure_seconds(4)
    phase = _phase("server", "x", result, offered_rps=60.0, series_s=0.5)
    assert phase.goodput_rps == 30.0 and phase.goodput_share == 0.5
    assert phase.failure_shares == {"RESOURCE_EXHAUSTED": 0.75, "DEADLINE_EXCEEDED": 0.25}
    assert phase.late_ok == 2 and phase.kinds["Recommend"]["late_ok"] == 2
    assert [row["t"] for row in phase.series] == [0, 0.5, 1.0, 1.5]
    # closed loop: what was sent is what was offered
    assert _phase("server", "x", result).goodput_share == 0.6


def test_late_ok_answers_survive_merge_and_the_trip_between_processes():
    a, b = LoadResult(late_ok=1), LoadResult(late_ok=2)
    a.kinds["k"], b.kinds["k"] = KindResult(late_ok=1), KindResult(late_ok=2)
    a.merge(b)
    back = LoadResult.decode(a.encode())
    assert back.late_ok == 3 and back.kinds["k"].late_ok == 3
    old = a.encode()  # a report written before the field existed still reads
    del old["late_ok"], old["kinds"]["k"]["late_ok"]
    assert LoadResult.decode(old).late_ok == 0


class _Channel:
    def unary_unary(self, method: str):
        return None


def test_an_ok_answer_after_the_deadline_is_counted_late():
    spec = LoadSpec("x", "/m", b"", timeout_s=0.1, duration_s=1.0)
    result = LoadResult()
    sender = _Sender(spec, _Channel(), result, measure_from=0)
    sender.record(0, None, due=0, sent=0, done=50 * MS)
    sender.record(0, None, due=0, sent=0, done=150 * MS)  # the client let it through past 100 ms
    sender.record(0, "DEADLINE_EXCEEDED", due=0, sent=0, done=100 * MS)
    assert (result.ok, result.late_ok, result.errors) == (2, 1, {"DEADLINE_EXCEEDED": 1})
    assert result.kinds["/m"].late_ok == 1


def test_cpus_are_read_as_taskset_takes_them_and_checked_against_the_machine():
    have = sorted(os.sched_getaffinity(0))
    assert parse_cpus("") == () and parse_cpus(None) == ()
    assert parse_cpus(str(have[0])) == (have[0],)
    assert parse_cpus(f"{have[0]}-{have[-1]}") == tuple(range(have[0], have[-1] + 1))
    with pytest.raises(ValueError, match="not available"):
        parse_cpus("4096")
    with pytest.raises(ValueError, match="taskset"):
        parse_cpus("one")


def test_pinned_moves_the_process_and_puts_it_back():
    before = os.sched_getaffinity(0)
    one = min(before)
    with pinned((one,)):
        assert os.sched_getaffinity(0) == {one}
    assert os.sched_getaffinity(0) == before
    with pinned(()):
        assert os.sched_getaffinity(0) == before


EXPOSITION = """# HELP hanzo_admission_late admitted calls whose handler returned after the client's deadline
# TYPE hanzo_admission_late counter
hanzo_admission_late_total{method="/a"} 3.0
hanzo_admission_late_total{method="/b"} 7.0
# HELP hanzo_admission_refused calls refused
# TYPE hanzo_admission_refused counter
hanzo_admission_refused_total{method="/a",reason="queue_full"} 5.0
hanzo_admission_refused_total{method="/a",reason="deadline"} 2.0
# HELP hanzo_admission_admitted calls admitted
# TYPE hanzo_admission_admitted counter
hanzo_admission_admitted_total{method="/a"} 90.0
# HELP hanzo_rpc_late gated calls whose handler returned after the client's deadline
# TYPE hanzo_rpc_late counter
"""


def test_the_admission_counters_are_read_off_a_scrape(monkeypatch):
    monkeypatch.setattr(scrape, "_page", lambda url: EXPOSITION)
    before = {"late": 1.0, "refused_queue_full": 5.0}
    counters = scrape.overload_counters(["u1", "u2"], ["/a"])  # two workers: summed
    assert counters == {"late": 6.0, "refused_queue_full": 10.0, "refused_deadline": 4.0, "admitted": 180.0,
                        "rpc_late": 0.0}
    assert scrape.counter_deltas(before, counters)["late"] == 5.0
    monkeypatch.setattr(scrape, "_page", lambda url: "")  # admission control off: nothing
    assert scrape.overload_counters(["u"], ["/a"]) == {}


def test_a_capacity_step_passes_on_latency_and_failures():
    assert step_passes({"ok": 1000, "errors": {}, "p99_ms": 3.9}, 2.0)
    assert not step_passes({"ok": 1000, "errors": {}, "p99_ms": 4.1}, 2.0)
    assert not step_passes({"ok": 1000, "errors": {"DEADLINE_EXCEEDED": 5}, "p99_ms": 1.0}, 2.0)
    assert not step_passes({"ok": 0, "errors": {}, "p99_ms": 1.0}, 2.0)


def test_recovery_is_the_first_normal_run_of_a_second_not_one_lucky_bucket():
    def row(p99, errors=0):
        return {"sent": 100, "errors": errors, "p99_ms": p99}

    series = [row(50.0, 40), row(3.0), row(30.0), row(3.0), row(3.0), row(3.0), row(3.0), row(9.0)]
    got = recovery(series, base_p99_ms=2.0, bucket_s=0.25, offset_s=0.1)
    assert got["first_within_s"] == 0.35  # bucket 1
    assert got["recovered_s"] == 0.85  # buckets 3-6 hold for a second
    assert recovery([row(50.0)] * 4, 2.0, 0.25)["recovered_s"] is None
    assert recovery([{"sent": 0, "errors": 0}], 2.0, 0.25)["first_within_s"] is None  # nothing answered


def _overload(**figures):
    base = {"goodput_share_of_capacity": 0.8, "failure_shares": {"RESOURCE_EXHAUSTED": 0.95}, "server_late": 0,
            "late_ok": 0, "accepted_p99_over_unloaded": 1.5, "rss_kib_before": 100_000, "rss_kib_after": 105_000,
            "recovery": {"recovered_s": 0.5}}
    return {**base, **figures}


def test_the_issues_goals_are_judged_from_the_figures():
    assert all(goals(_overload()).values())
    missed = goals(_overload(goodput_share_of_capacity=0.2, failure_shares={"RESOURCE_EXHAUSTED": 0.1},
                             server_late=2100, accepted_p99_over_unloaded=20.0, rss_kib_after=150_000,
                             recovery={"recovered_s": None}))
    assert not any(missed.values())
    assert goals(_overload(server_late=None))["0 calls finished after their deadline"] is None
    assert goals(_overload(failure_shares={}))[">= 90% of failures RESOURCE_EXHAUSTED"]


def test_the_edge_counts_calls_that_return_after_their_deadline_with_admission_off():
    from hanzo.server.api.edge import Edge
    from hanzo.server.api.latency import LatencyRecorder

    class Context:
        def __init__(self, remaining):
            self.remaining = remaining

        def done(self):
            return False

        def time_remaining(self):
            return self.remaining

        def add_done_callback(self, callback):
            pass

        async def abort(self, code, text):
            raise RuntimeError(code)

    async def handler(request, context):
        return b"answer"

    edge = Edge(LatencyRecorder())  # no admission control
    gated, open_ = edge.wrap("/a", handler), edge.wrap("/health", handler, gated=False)

    async def calls():
        await gated(b"", Context(-0.01))  # the caller's deadline passed while it ran
        await gated(b"", Context(1.0))
        await gated(b"", Context(None))
        await open_(b"", Context(-0.01))  # never gated, never counted

    asyncio.run(calls())
    assert edge.late == {"/a": 1}


def test_the_overload_settings_write_their_admission_tables(tmp_path):
    from hanzo.loadtest.overload import _admission_file

    assert _admission_file(tmp_path, "on", {"queue_size": "8"}).read_text() == \
        "[admission]\nenabled = true\nqueue_size = 8\n"
    assert _admission_file(tmp_path, "shed", {}).read_text() == "[admission]\nenabled = true\ncpu_shedding = true\n"
    assert _admission_file(tmp_path, "off", {}).read_text() == "[admission]\nenabled = false\n"
    with pytest.raises(ValueError, match="shed"):
        _admission_file(tmp_path, "sometimes", {})


def test_settling_waits_for_a_busy_process_to_go_quiet():
    import subprocess
    import sys
    import time

    from hanzo.loadtest.overload import settle

    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 1.5\n"
                             "while time.time() < end: pass\ntime.sleep(60)"])
    try:
        started = time.monotonic()
        waited = settle(busy.pid, quiet_s=1.0, limit_s=20)
        assert 2.0 <= waited <= 10 and time.monotonic() - started >= 2.0
        assert settle(busy.pid, quiet_s=1.0, limit_s=20) < 2.0  # quiet now: about quiet_s
    finally:
        busy.kill()
        busy.wait()
