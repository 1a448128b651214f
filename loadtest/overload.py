"""Overload, measured from scratch: what a server does with twice the load it can carry.

    python -m hanzo.loadtest.overload --out loadtest/reports/overload-recommend.json
        [--rpcs Recommend,Search,ModelInfer] [--workdir DIR] [--server-cpus 0 --client-cpus 1]
        [--admission tolerance=1.5 --admission queue_size=16]

Starts `hanzo serve` on the demo world (`--workdir` keeps the world the first start builds)
pinned to the server's CPUs, the load generator (this process) on the others, and per RPC:
the unloaded p99 (a low rate); the capacity, the highest rate whose p99 stays within twice
that (doubling, then bisecting, a few seconds a step); the p99 at 0.8x capacity; then 2x
capacity open loop with 100 ms deadlines, followed at once by 0.5x capacity to time the
recovery. All of it with admission control on, then again ([admission] enabled = false) off,
at the capacity the first server measured; `--settings on,shed,off` adds a server with
admission control on and CPU shedding too (cpu_shedding = true). Each server is first left to
settle: its CPU quiet for two seconds (the demo's background training done), so that work
does not land in a measurement. Every load is bounded in time. The JSON report
says, per RPC and per setting, the goodput and its share of capacity, the failures' codes,
the calls the server finished after their deadline (its /metrics), the accepted p99, RSS
before and after, the recovery time, and which of the issue's goals were met."""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import targets
from .fuzz_server import Served, start_demo, stop
from .openloop import LoadResult, LoadSpec, parse_cpus, run_load, run_sequence
from .overload_figures import goals, recovery, step_passes
from .reports import write_report
from .runner import _phase, summarize
from .scrape import counter_deltas, overload_counters, quantiles, scrape

MODEL = "demo_risk_mlp"  # the ModelInfer target: a demo model every demo world has


@dataclass(frozen=True)
class Plan:
    deadline_s: float = 0.1
    # low enough to queue nothing, long enough that its p99 is not two or three calls' luck
    unloaded_rate: float = 100.0
    unloaded_s: float = 8.0
    step_s: float = 3.0
    first_rate: float = 200.0
    max_rate: float = 20000.0
    bisections: int = 3
    overload_s: float = 10.0
    recovery_s: float = 6.0
    bucket_s: float = 0.25  # the recovery's series, finer than a second
    cpus: tuple[int, ...] = ()  # the load generator's


def _spec(url: str, target: targets.Target, plan: Plan, rate: float, seconds: float, warmup: float = 1.0,
          **more) -> LoadSpec:
    return LoadSpec(url, target.method, target.request, requests=target.requests, rate=rate, duration_s=seconds,
                    warmup_s=warmup, timeout_s=plan.deadline_s, cpus=plan.cpus, **more)


def _p99_ms(result: LoadResult) -> float:
    """p99 of the answered calls from their due time (what a caller waited, client lag included)."""
    return result.corrected.get_value_at_percentile(99) / 1000 if result.ok else float("inf")


def _load(url: str, target: targets.Target, plan: Plan, rate: float, seconds: float, log) -> dict:
    result = run_load(_spec(url, target, plan, rate, seconds))
    row = {"rate": rate, "achieved_rps": round(result.sent / result.elapsed_s, 1), "ok": result.ok,
           "errors": result.errors, "p99_ms": round(_p99_ms(result), 3), "late_sends": result.late_sends}
    log(f"  {rate:7.0f}/s: p99 {row['p99_ms']:.2f} ms, errors {result.errors or 0}")
    time.sleep(0.5)  # what is left of a backlog drains before the next step
    return row


def capacity(url: str, target: targets.Target, plan: Plan, base_p99: float, log) -> tuple[float, list[dict]]:
    """The highest rate whose p99 stays within 2x `base_p99` (no failures, the client kept up):
    doubling from plan.first_rate, then bisecting between the last pass and the first fail."""
    steps: list[dict] = []

    def passes(rate: float) -> bool:
        steps.append(_load(url, target, plan, rate, plan.step_s, log))
        steps[-1]["passed"] = step_passes(steps[-1], base_p99)
        return steps[-1]["passed"]

    low, high, rate = plan.unloaded_rate, None, plan.first_rate
    while rate <= plan.max_rate:
        if not passes(rate):
            high = rate
            break
        low, rate = rate, rate * 2
    if high is None:
        return low, steps
    for _ in range(plan.bisections):
        middle = round((low + high) / 2, -1)
        if middle in (low, high):
            break
        if passes(middle):
            low = middle
        else:
            high = middle
    return low, steps


def overload(served: Served, target: targets.Target, plan: Plan, cap: float, base_p99: float,
             metrics: list[str], log) -> dict:
    """2x capacity with the plan's deadlines, then at once 0.5x to see how soon latency is back."""
    over = _spec(served.url, target, plan, 2 * cap, plan.overload_s)
    after = _spec(served.url, target, plan, 0.5 * cap, plan.recovery_s, warmup=0.0, series_s=plan.bucket_s)
    rss_before = served.rss_kib()
    counters = overload_counters(metrics, [target.method])
    histogram = scrape(metrics, target.method)
    log(f"  overload: {2 * cap:.0f}/s for {plan.overload_s:g} s, then {0.5 * cap:.0f}/s")
    loaded, recovering = run_sequence([over, after])
    time.sleep(0.5)  # calls still on the server finish (or not) and are counted
    phase = _phase("overload", served.url, loaded, over.rate)
    server = counter_deltas(counters, overload_counters(metrics, [target.method]))
    # the server's own latency (edge entry to answer, refusals included) beside the client's:
    # what the client waited beyond it was spent before the call reached the edge
    server_ms = quantiles(histogram, scrape(metrics, target.method))
    out = {"rate": over.rate, "deadline_ms": plan.deadline_s * 1000, "goodput_rps": round(phase.goodput_rps, 1),
           "goodput_share_of_capacity": round(phase.goodput_rps / cap, 4), "goodput_share": phase.goodput_share,
           "sent": phase.sent, "ok": phase.ok, "errors": phase.errors, "failure_shares": phase.failure_shares,
           "late_ok": phase.late_ok, "late_sends": phase.late_sends, "accepted_ms": summarize(loaded.corrected),
           "accepted_from_send_ms": summarize(loaded.latency),
           "accepted_p99_over_unloaded": round(_p99_ms(loaded) / base_p99, 2),
           # over the overload and the recovery after it (one scrape after both)
           "server_late": server.get("rpc_late", server.get("late")), "server_counters": server,
           "server_ms": server_ms,
           # the load generator's CPU over the overload (its warm-up and last answers included)
           "client_cpu_share": round(loaded.client_cpu_s / (over.warmup_s + over.duration_s), 3),
           "rss_kib_before": rss_before, "rss_kib_after": served.rss_kib()}
    series = _phase("recovery", served.url, recovering, after.rate, plan.bucket_s).series
    # the recovery's clock starts when the overload's last call was due: the gap is the wait
    # for the overload's last answers (at most a deadline) before the next load begins
    gap_s = (recovering.start_ns - loaded.end_ns) / 1e9
    out["recovery"] = {"rate": after.rate, "gap_s": round(gap_s, 3), "bucket_s": plan.bucket_s,
                       **recovery(series, base_p99, plan.bucket_s, offset_s=gap_s), "series": series}
    return out


def one_rpc(served: Served, target: targets.Target, plan: Plan, metrics: list[str], cap: float | None,
            log) -> tuple[dict, float]:
    """Everything for one RPC on one server; the capacity is measured when `cap` is None."""
    log(f"{target.label}: unloaded at {plan.unloaded_rate:g}/s")
    run_load(_spec(served.url, target, plan, plan.unloaded_rate, 1.0, warmup=1.0))  # warm the path
    base = run_load(_spec(served.url, target, plan, plan.unloaded_rate, plan.unloaded_s))
    out: dict = {"unloaded_p99_ms": round(_p99_ms(base), 3), "unloaded_errors": base.errors}
    base_p99 = _p99_ms(base)
    if cap is None:
        cap, out["sweep"] = capacity(served.url, target, plan, base_p99, log)
        out["capacity_rps"] = cap
    out["at_0.8x"] = _load(served.url, target, plan, 0.8 * cap, 5.0, log)
    out["overload"] = overload(served, target, plan, cap, base_p99, metrics, log)
    out["goals"] = goals(out["overload"])
    return out, cap


def _targets(names: list[str], served: Served, workdir: Path) -> list[targets.Target]:
    manifest = workdir / "demo_world" / "demo.json"
    return [targets.model_infer(served.url, MODEL) if name == "ModelInfer"
            else targets.commerce(name, demo_manifest=manifest) for name in names]


SETTINGS = ("on", "shed", "off")
QUIET_CPU = 0.05  # a settled server's CPU share
SETTLE_LIMIT_S = 180.0


def _admission_file(workdir: Path, setting: str, tuning: dict[str, str]) -> Path:
    """The server's [admission] table: on with the tuning given, on with CPU shedding, or off."""
    if setting not in SETTINGS:
        raise ValueError(f"--settings takes {', '.join(SETTINGS)}, not {setting!r}")
    path = workdir / f"admission-{setting}.toml"
    options = {**tuning, "cpu_shedding": "true"} if setting == "shed" else tuning
    lines = [f"enabled = {'false' if setting == 'off' else 'true'}"] + [f"{k} = {v}" for k, v in options.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[admission]\n" + "\n".join(lines) + "\n")
    return path


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, quiet_s: float = 2.0, limit_s: float = SETTLE_LIMIT_S) -> float:
    """Wait until the server's CPU has stayed under QUIET_CPU for `quiet_s` (at most `limit_s`);
    the seconds waited."""
    start = last = time.monotonic()
    used = _cpu_seconds(pid)
    quiet_since = start
    while time.monotonic() - start < limit_s:
        time.sleep(0.5)
        now, now_used = time.monotonic(), _cpu_seconds(pid)
        if now_used - used > QUIET_CPU * (now - last):
            quiet_since = now
        elif now - quiet_since >= quiet_s:
            break
        last, used = now, now_used
    return round(time.monotonic() - start, 1)


def _tuning(items: list[str]) -> dict[str, str]:
    if any("=" not in item for item in items):
        raise ValueError("--admission takes KEY=VALUE, an [admission] option (docs/configuration.md)")
    return dict(item.split("=", 1) for item in items)


def run(args: argparse.Namespace, log=lambda m: print(m, file=sys.stderr)) -> dict:
    from .targets import free_port

    plan = Plan(deadline_s=args.deadline_ms / 1000, step_s=args.step_seconds, overload_s=args.overload_seconds,
                recovery_s=args.recovery_seconds, cpus=parse_cpus(args.client_cpus))
    server_cpus, tuning, names = parse_cpus(args.server_cpus), _tuning(args.admission), args.rpcs.split(",")
    # a capacity given is taken, not measured (quicker tuning runs)
    caps: dict[str, float | None] = {name: args.capacity for name in names}
    report: dict = {"rpcs": {}, "deadline_ms": args.deadline_ms, "server_cpus": server_cpus,
                    "client_cpus": plan.cpus, "admission": tuning, "capacity_given": args.capacity,
                    "plan": plan.__dict__}
    for setting in args.settings.split(","):
        config, port = _admission_file(args.workdir, setting, tuning), free_port()
        log(f"admission {setting}: starting hanzo serve in {args.workdir} on CPUs {server_cpus or 'any'} ...")
        served = start_demo(args.workdir, f"serve-{setting}.log", ("--config", str(config), "--metrics-port",
                                                                   str(port)), cpus=server_cpus)
        try:
            report.setdefault("settled_s", {})[setting] = settle(served.process.pid)
            for name, target in zip(names, _targets(names, served, args.workdir)):
                entry, caps[name] = one_rpc(served, target, plan, [f"127.0.0.1:{port}"], caps[name], log)
                # keyed by the name asked for: no spaces, so a JSON path to a figure is plain
                report["rpcs"].setdefault(name, {"target": target.label, "capacity_rps": caps[name]})[setting] = entry
        finally:
            stop(served.process)
    for entry in report["rpcs"].values():
        entry["unloaded_p99_ms"] = next(entry[s] for s in SETTINGS if s in entry)["unloaded_p99_ms"]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.overload", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-overload"),
                        help="where the demo world is built (once) and the servers run")
    parser.add_argument("--rpcs", default="Recommend", help="comma-separated: Recommend, Search, ModelInfer, ...")
    parser.add_argument("--server-cpus", default="0", help="the server's CPUs (taskset -c; empty: any)")
    parser.add_argument("--client-cpus", default="1", help="the load generator's CPUs (empty: any)")
    parser.add_argument("--deadline-ms", type=float, default=100.0, help="every call's deadline")
    parser.add_argument("--step-seconds", type=float, default=3.0, help="measured seconds per sweep step")
    parser.add_argument("--overload-seconds", type=float, default=10.0)
    parser.add_argument("--recovery-seconds", type=float, default=6.0)
    parser.add_argument("--settings", default="on,off",
                        help="comma-separated: on (admission control), shed (on, and CPU shedding), off")
    parser.add_argument("--capacity", type=float,
                        help="take this capacity (req/s, every RPC) instead of measuring it: quicker tuning runs")
    parser.add_argument("--admission", action="append", default=[], metavar="KEY=VALUE",
                        help="an [admission] option for the server with admission control on (repeatable)")
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except ValueError as exc:
        print(f"overload: {exc}", file=sys.stderr)
        return 2
    write_report(args.out, report)
    for label, entry in report["rpcs"].items():
        print(f"{label}: capacity {entry['capacity_rps']:.0f}/s, unloaded p99 {entry['unloaded_p99_ms']:.2f} ms")
        for setting in (s for s in SETTINGS if s in entry):
            o = entry[setting]["overload"]
            print(f"  admission {setting}: goodput {o['goodput_share_of_capacity']:.0%} of capacity, failures "
                  f"{o['failure_shares']}, late {o['server_late']}, accepted p99 {o['accepted_ms'].get('p99')} ms, "
                  f"recovery {o['recovery']['recovered_s']} s, p99 at 0.8x {entry[setting]['at_0.8x']['p99_ms']} ms"
                  f"; goals {entry[setting]['goals']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

