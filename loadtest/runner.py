"""A measurement: the same load against the no-op floor and against the server, in one run,
with the server's own histogram of the same window beside the client's figures."""
from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import asdict, dataclass, field, replace

import grpc
import numpy as np
from hdrh.histogram import HdrHistogram

from tritonclient.grpc import service_pb2, service_pb2_grpc

from hanzo.v1 import admin_pb2, admin_pb2_grpc

from .floor import FloorServer
from .h2load import run_h2load
from .openloop import LoadResult, LoadSpec, new_histogram, pinned, run_load
from .scrape import counter_deltas, overload_counters, quantiles, scrape
from .targets import KSERVE_INFER, Scenario, Target

PERCENTILES = (50, 90, 99, 99.9)


def summarize(histogram: HdrHistogram) -> dict[str, float]:
    """Milliseconds at the usual percentiles."""
    if histogram.get_total_count() == 0:
        return {}
    out = {f"p{p:g}": histogram.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    out["max"] = histogram.get_max_value() / 1000
    out["mean"] = histogram.get_mean_value() / 1000
    return out


@dataclass
class Phase:
    name: str  # "floor" or "server"
    url: str
    sent: int
    ok: int
    errors: dict[str, int]
    achieved_rps: float
    late_sends: int
    e2e_ms: dict[str, float]
    e2e_corrected_ms: dict[str, float]
    server_ms: dict[str, float] = field(default_factory=dict)  # the server's own histogram
    server_count: int = 0
    # per kind of call in a scenario: sent, ok, errors, e2e_corrected_ms, server_ms
    kinds: dict[str, dict] = field(default_factory=dict)
    # per measured second: t, sent, ok, errors, p50_ms, p99_ms, max_ms (due-time latencies)
    series: list[dict] = field(default_factory=list)
    # from the servers' Prometheus histograms (--metrics-url), summed over every process given
    server_metrics_ms: dict[str, float] = field(default_factory=dict)
    # OK answers per measured second, and as a share of the offered rate (open loop: the rate
    # asked for; closed loop: the calls sent)
    goodput_rps: float = 0.0
    goodput_share: float = 0.0
    # each status code's share of the failed calls; RESOURCE_EXHAUSTED (refused at once) and
    # DEADLINE_EXCEEDED (the caller gave up) are always there when a call failed
    failure_shares: dict[str, float] = field(default_factory=dict)
    late_ok: int = 0  # OK answers that came back after the call's deadline (client side)
    # what the servers' counters gained over the load, warm-up included (--metrics-url): late
    # (handler returned after the caller's deadline), rpc_late, admitted, refused_<reason>
    server_counters: dict[str, float] = field(default_factory=dict)


@dataclass
class Report:
    label: str
    method: str
    mode: str
    rate: float
    concurrency: int
    duration_s: float
    processes: int
    h2_clients: int
    h2_streams: int
    started: str
    machine: str
    phases: list[Phase]

    def as_dict(self) -> dict:
        return asdict(self)


def failure_shares(errors: dict[str, int]) -> dict[str, float]:
    """Each code's share of the failed calls; the two codes of an overload always named."""
    failed = sum(errors.values())
    if not failed:
        return {}
    shares = {"RESOURCE_EXHAUSTED": 0.0, "DEADLINE_EXCEEDED": 0.0}
    shares.update({code: n / failed for code, n in errors.items()})
    return {code: round(share, 4) for code, share in shares.items()}


def _phase(name: str, url: str, result: LoadResult, offered_rps: float | None = None, series_s: float = 1.0) -> Phase:
    """`offered_rps`: the open-loop rate asked for (None: the calls sent are what was offered)."""
    achieved = result.sent / result.elapsed_s if result.elapsed_s else 0.0
    phase = Phase(name, url, result.sent, result.ok, result.errors, achieved, result.late_sends,
                  summarize(result.latency), summarize(result.corrected))
    phase.goodput_rps = result.ok / result.elapsed_s if result.elapsed_s else 0.0
    offered = offered_rps or achieved
    phase.goodput_share = round(phase.goodput_rps / offered, 4) if offered else 0.0
    phase.failure_shares = failure_shares(result.errors)
    phase.late_ok = result.late_ok
    phase.kinds = {label: {"sent": k.sent, "ok": k.ok, "errors": k.errors, "e2e_ms": summarize(k.latency),
                           "e2e_corrected_ms": summarize(k.corrected), "failure_shares": failure_shares(k.errors),
                           "late_ok": k.late_ok} for label, k in result.kinds.items()}
    for t, (sent, ok, errors, values) in enumerate(zip(result.second_sent, result.second_ok, result.second_errors,
                                                       result.second_latency_us)):
        row = {"t": t if series_s == 1.0 else round(t * series_s, 6), "sent": sent, "ok": ok, "errors": errors}
        if values:
            p50, p99 = np.percentile(values, [50, 99])
            row.update(p50_ms=round(p50 / 1000, 4), p99_ms=round(p99 / 1000, 4), max_ms=max(values) / 1000)
        phase.series.append(row)
    return phase


def call_once(url: str, target: Target, timeout: float = 30) -> bytes:
    """One call, to check the target answers and to learn the response the floor repeats."""
    with grpc.insecure_channel(url) as channel:
        return channel.unary_unary(target.method)(target.request, timeout=timeout)


def _server_latency(url: str, method: str, reset: bool) -> admin_pb2.MethodLatency | None:
    """The server's own histogram for `method` (empty if it saw no call; None if the server
    has no Admin service)."""
    try:
        with grpc.insecure_channel(url) as channel:
            report = admin_pb2_grpc.AdminStub(channel).GetLatency(admin_pb2.LatencyRequest(reset=reset), timeout=10)
    except grpc.RpcError:
        return None
    return next((m for m in report.methods if m.method == method), admin_pb2.MethodLatency(method=method))


def _success_count(url: str, target: Target) -> int | None:
    """Calls the server counted as answered: the model's success count for ModelInfer, else
    (and on servers without model statistics) the Admin histogram's count."""
    with grpc.insecure_channel(url) as channel:
        if target.method == KSERVE_INFER:
            request = service_pb2.ModelInferRequest.FromString(target.request)
            try:
                stats = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
                    service_pb2.ModelStatisticsRequest(name=request.model_name), timeout=10)
                return sum(m.inference_stats.success.count for m in stats.model_stats)
            except grpc.RpcError:
                pass
    own = _server_latency(url, target.method, reset=False)
    return own.count if own is not None else None


def _h2load_phase(name: str, spec: LoadSpec, target: Target) -> Phase:
    _server_latency(spec.url, target.method, reset=True)
    before = _success_count(spec.url, target)
    with pinned(spec.cpus):  # h2load inherits the CPUs
        result = run_h2load(spec.url, target.method, target.request, clients=spec.h2_clients,
                            streams=spec.h2_streams, duration_s=spec.duration_s, warmup_s=spec.warmup_s)
    after = _success_count(spec.url, target)
    # h2load counts HTTP answers; the server's own counters say how many were gRPC successes
    # (they include the warm-up's calls, so confirmed can exceed done).
    confirmed = after - before if before is not None and after is not None else -1
    phase = Phase(name, spec.url, result.done, confirmed, {"http_failed": result.http_failed} if result.http_failed
                  else {}, result.requests_per_s, 0, {"mean": result.mean_ms, "max": result.max_ms}, {})
    _add_server_latency(phase, spec.url, target.method)
    return phase


def _add_server_latency(phase: Phase, url: str, method: str) -> None:
    own = _server_latency(url, method, reset=False)
    if own is not None and own.count:
        phase.server_ms, phase.server_count = summarize(HdrHistogram.decode(own.hdr_histogram)), own.count


def _load_phase(name: str, spec: LoadSpec, scenario: Scenario, metrics_urls: list[str] | None = None) -> Phase:
    _server_latency(spec.url, scenario.parts[0][0].method, reset=True)  # resets every method's window
    methods = sorted({t.method for t, _ in scenario.parts})
    before = {m: scrape(metrics_urls, m) for m in methods} if metrics_urls else {}
    counters = overload_counters(metrics_urls, methods) if metrics_urls else {}
    offered = spec.rate if spec.mode in ("poisson", "constant") else None
    phase = _phase(name, spec.url, run_load(spec), offered, spec.series_s)
    if metrics_urls:
        time.sleep(0.2)  # the last calls' latencies are recorded when gRPC reports them done
        phase.server_counters = counter_deltas(counters, overload_counters(metrics_urls, methods))
        after = {m: scrape(metrics_urls, m) for m in methods}
        bounds = sorted({b for m in methods for b in after[m]})  # every method of a scenario together
        merged_before = {b: sum(before[m].get(b, 0.0) for m in methods) for b in bounds}
        merged_after = {b: sum(after[m].get(b, 0.0) for m in methods) for b in bounds}
        phase.server_metrics_ms = quantiles(merged_before, merged_after)
    # The window also holds the warm-up calls; at a steady rate they share its percentiles.
    if len(scenario.parts) == 1:
        _add_server_latency(phase, spec.url, scenario.parts[0][0].method)
        return phase
    merged, seen = new_histogram(), set()
    for target, _ in scenario.parts:
        own = _server_latency(spec.url, target.method, reset=False)
        if own is None or not own.count:
            continue
        histogram = HdrHistogram.decode(own.hdr_histogram)
        phase.kinds[target.label]["server_ms"] = summarize(histogram)
        if target.method not in seen:  # two kinds of one method share its histogram: count it once
            seen.add(target.method)
            merged.add(histogram)
            phase.server_count += own.count
    phase.server_ms = summarize(merged)
    return phase


def measure(spec: LoadSpec, target: Target | Scenario, with_floor: bool = True, peers: dict[str, str] | None = None,
            log=print, metrics_urls: list[str] | None = None) -> Report:
    """`spec.url` is the server; what is sent comes from `target` (one method) or a scenario
    (several, by weight). `peers` are other servers (e.g. a Triton) loaded the same way after it."""
    scenario = target if isinstance(target, Scenario) else Scenario.single(target)
    first = scenario.parts[0][0]
    spec = replace(spec, method=first.method, request=first.request, requests=first.requests,
                   mix=scenario.mix() if len(scenario.parts) > 1 else ())
    responses = {t.method: (t.request_type, call_once(spec.url, t)) for t, _ in scenario.parts}
    urls = {"server": spec.url, **(peers or {})}
    phases = []
    with contextlib.ExitStack() as stack:
        if with_floor:
            floor = FloorServer([(m, kind, response) for m, (kind, response) in responses.items()])
            urls = {"floor": stack.enter_context(floor).url, **urls}
        for name, url in urls.items():
            if name != "server":
                for t, _ in scenario.parts:
                    call_once(url, t)
            log(f"{name}: {spec.mode} load on {url} ...")
            if spec.mode == "h2load":
                phases.append(_h2load_phase(name, replace(spec, url=url), first))
            else:
                phases.append(_load_phase(name, replace(spec, url=url), scenario,
                                          metrics_urls if name == "server" else None))
    method = first.method if len(scenario.parts) == 1 else "mixed"
    return Report(scenario.label, method, spec.mode, spec.rate, spec.concurrency, spec.duration_s,
                  spec.processes, spec.h2_clients, spec.h2_streams, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  f"{platform.node()} {platform.machine()} {_cpus()} CPUs", phases)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _overload_lines(p: Phase) -> list[str]:
    """Goodput, what the failures were, and calls that finished after their deadline."""
    lines = []
    if p.errors or p.late_ok:
        shares = ", ".join(f"{code} {share:.1%}" for code, share in p.failure_shares.items())
        lines.append(f"         goodput {p.goodput_rps:.0f} OK/s ({p.goodput_share:.1%} of offered); failures: "
                     f"{shares or 'none'}; {p.late_ok} OK after the deadline (client side)")
    c = p.server_counters
    if c:
        late = c.get("late", c.get("rpc_late"))
        refused = {k.removeprefix("refused_"): int(v) for k, v in c.items() if k.startswith("refused_") and v}
        lines.append(f"         server: {'-' if late is None else int(late)} calls finished after their deadline"
                     + (f", refused {refused}" if refused else ""))
    return lines


def format_report(report: Report) -> str:
    load = {"closed": f"closed loop, concurrency {report.concurrency}",
            "h2load": f"h2load {report.h2_clients} connections x {report.h2_streams} streams"}.get(
        report.mode, f"{report.mode} {report.rate:g} req/s")
    lines = [f"{report.label}: {load}, {report.duration_s:g} s, {report.processes} client process(es)",
             f"{'phase':<8} {'ok':>7} {'errors':>8} {'req/s':>8} | {'e2e p50':>8} {'p99':>7} {'p99.9':>7} "
             f"{'max':>7} | {'server p50':>10} {'p99':>7} {'p99.9':>7}  (ms)"]
    for p in report.phases:
        e, s = p.e2e_ms, p.server_ms
        errors = sum(p.errors.values())
        if report.mode == "h2load":
            lines.append(f"{p.name:<8} {p.ok:>7} {errors:>8} {p.achieved_rps:>8.0f} | mean {e['mean']:>7.3f} "
                         f"max {e['max']:>7.2f}        | "
                         + (f"{s['p50']:>10.3f} {s['p99']:>7.3f} {s['p99.9']:>7.3f}" if s else f"{'-':>10}"))
            continue
        lines.append(
            f"{p.name:<8} {p.ok:>7} {errors:>8} {p.achieved_rps:>8.0f} | {e.get('p50', 0):>8.3f} "
            f"{e.get('p99', 0):>7.3f} {e.get('p99.9', 0):>7.3f} {e.get('max', 0):>7.2f} | "
            + (f"{s['p50']:>10.3f} {s['p99']:>7.3f} {s['p99.9']:>7.3f}" if s else f"{'-':>10} {'-':>7} {'-':>7}"))
        if p.errors:
            lines.append(f"         errors: {p.errors}")
        lines.extend(_overload_lines(p))
        if p.late_sends:
            lines.append(f"         {p.late_sends} calls left the client > 2 ms late: add --processes")
        if p.server_metrics_ms.get("count"):
            m = p.server_metrics_ms
            lines.append(f"         server from its metrics ({m['count']:.0f} calls): p50 {m.get('p50', 0):.3f} "
                         f"p99 {m.get('p99', 0):.3f} p99.9 {m.get('p99.9', 0):.3f} ms (bucket-interpolated)")
        if len(p.kinds) > 1:
            for label, k in p.kinds.items():
                c, own = k["e2e_ms"], k.get("server_ms") or {}
                lines.append(f"  {label:<22} {k['ok']:>7} {sum(k['errors'].values()):>6} | e2e p50 "
                             f"{c.get('p50', 0):>7.3f} p99 {c.get('p99', 0):>7.3f} | server p50 "
                             + (f"{own['p50']:>7.3f} p99 {own['p99']:>7.3f}" if own else "-"))
    return "\n".join(lines)
