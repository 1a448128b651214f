"""Fuzz every RPC the server registers (learnt through its reflection), each call with a
deadline: valid requests, structurally hostile ones, byte-mutated encodings and random bytes,
sent as raw bytes so that undecodable bodies reach the server too. The report counts the
answers per method and status code and lists every UNKNOWN and INTERNAL with the mutation
that caused it, the calls answered after their deadline, the server's memory before and after
each pass, and whether it still answers at the end.

    python -m hanzo.loadtest.fuzz --calls 4000 --seed 1 2 --out loadtest/reports/fuzz.json
    python -m hanzo.loadtest.fuzz --target 127.0.0.1:50051 --pid 1234 --passes 2 --out fuzz.json
    python -m hanzo.loadtest.fuzz --calls 0 --big-ids 60 --out big-ids.json

Without --target it starts `hanzo serve` on the demo world in a work folder (built on the
first start: tens of seconds) on a free loopback port, and stops it at the end."""
from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import grpc

from .fuzz_cases import Case, CaseMaker
from .fuzz_schema import Method, discover, vocabulary
from .fuzz_server import Served, alive, start_demo, stop
from .reports import write_report

PROBLEM_CODES = ("UNKNOWN", "INTERNAL")
ERASING = {"Forget"}
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
STREAM_DEADLINE_S = 0.5  # a server-streaming call (Health.Watch) ends by its deadline: keep it short
MESSAGE_CHARS = 200


@dataclass(frozen=True)
class Settings:
    calls: int = 2000  # per seed and pass
    seeds: tuple[int, ...] = (0,)
    concurrency: int = 4
    deadline_s: float = 2.0
    slack_s: float = 0.5  # an answer this long after the deadline counts as late
    max_string_bytes: int = 1 << 20
    passes: int = 1
    time_limit_s: float = 600.0  # per pass: calls not started by then are skipped
    destructive: bool = False  # may unload and reload the server's own models


class Tally:
    """What one pass saw, filled from several threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: dict[str, Counter] = defaultdict(Counter)
        self.problems: dict[tuple[str, str, str], dict] = {}
        self.late: list[dict] = []
        self.deadline_exceeded: Counter = Counter()
        self.fuzzer_errors = 0
        self.skipped = 0

    def add(self, case: Case, code: str, message: str, elapsed: float, deadline: float, slack: float) -> None:
        message = (message or "")[:MESSAGE_CHARS]
        with self.lock:
            self.codes[case.method.path][code] += 1
            if case.what.startswith("fuzzer could not"):
                self.fuzzer_errors += 1
            if code in PROBLEM_CODES:
                group = self.problems.setdefault((case.method.path, code, message), {"count": 0, "mutations": []})
                group["count"] += 1
                if len(group["mutations"]) < 3:
                    group["mutations"].append(f"#{case.index}: {case.what[:160]}")
            streaming = case.method.streaming[1]
            if code == "DEADLINE_EXCEEDED" and not streaming:
                self.deadline_exceeded[case.method.path] += 1
            if elapsed > deadline + slack:
                self.late.append({"method": case.method.path, "code": code, "elapsed_s": round(elapsed, 3),
                                  "deadline_s": deadline, "mutation": f"#{case.index}: {case.what[:160]}"})

    def report(self) -> dict:
        samples = [{"method": m, "code": c, "message": msg, **group}
                   for (m, c, msg), group in sorted(self.problems.items(),
                                                    key=lambda kv: (kv[0][1] != "INTERNAL", -kv[1]["count"]))]
        totals = Counter()
        for counts in self.codes.values():
            totals.update(counts)
        return {"calls": sum(totals.values()), "codes": dict(totals), "unknown": totals["UNKNOWN"],
                "internal": totals["INTERNAL"], "late": len(self.late),
                "deadline_exceeded": sum(self.deadline_exceeded.values()),
                "deadline_exceeded_by_method": dict(self.deadline_exceeded), "fuzzer_errors": self.fuzzer_errors,
                "skipped_by_time_limit": self.skipped, "problems": samples, "late_calls": self.late[:50],
                "by_method": {m: dict(c) for m, c in sorted(self.codes.items())}}


class Caller:
    """Sends a case's bytes as they are, whatever the method's shape."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self._callables: dict[str, object] = {}

    def _callable(self, method: Method):
        if method.path not in self._callables:
            client_streaming, server_streaming = method.streaming
            kind = {(False, False): self.channel.unary_unary, (False, True): self.channel.unary_stream,
                    (True, False): self.channel.stream_unary, (True, True): self.channel.stream_stream}[
                (client_streaming, server_streaming)]
            self._callables[method.path] = kind(method.path, request_serializer=None, response_deserializer=None)
        return self._callables[method.path]

    def deadline(self, method: Method, deadline_s: float) -> float:
        return min(deadline_s, STREAM_DEADLINE_S) if method.streaming[1] else deadline_s

    def call(self, case: Case, deadline_s: float) -> tuple[str, str]:
        """The status code's name and its message."""
        client_streaming, server_streaming = case.method.streaming
        request = iter([case.body]) if client_streaming else case.body
        try:
            answer = self._callable(case.method)(request, timeout=deadline_s)
            if server_streaming:
                for _ in answer:  # until the server ends the stream or the deadline does
                    pass
            return "OK", ""
        except grpc.RpcError as exc:
            return exc.code().name, exc.details() or ""


def run_pass(caller: Caller, makers: list[CaseMaker], settings: Settings) -> dict:
    """Every seed's calls once, `settings.concurrency` at a time."""
    tally = Tally()
    end = time.monotonic() + settings.time_limit_s

    def one(job: tuple[CaseMaker, int]) -> None:
        if time.monotonic() > end:
            with tally.lock:
                tally.skipped += 1
            return
        maker, index = job
        case = maker.case(index)
        deadline = caller.deadline(case.method, settings.deadline_s)
        started = time.monotonic()
        code, message = caller.call(case, deadline)
        tally.add(case, code, message, time.monotonic() - started, deadline, settings.slack_s)

    started = time.monotonic()
    jobs = [(maker, i) for maker in makers for i in range(settings.calls)]
    with concurrent.futures.ThreadPoolExecutor(settings.concurrency) as pool:
        list(pool.map(one, jobs))
    return {"seconds": round(time.monotonic() - started, 1), **tally.report()}


def fuzz(served: Served, settings: Settings, world: Path | None = None, big_ids: int = 0,
         big_id_bytes: int = 5 << 20) -> dict:
    """Fuzz the server at `served.url`; the report (without provenance)."""
    channel = grpc.insecure_channel(served.url, options=CHANNEL_OPTIONS)
    try:
        methods, source = discover(channel)
        if not settings.destructive:  # an erasure rebuilds the store: not a call to make thousands of times
            methods = [m for m in methods if m.name not in ERASING]
        vocab = vocabulary(channel, served.demo, world, methods)
        makers = [CaseMaker(methods, vocab, seed, settings.max_string_bytes, settings.destructive)
                  for seed in settings.seeds]
        caller = Caller(channel)
        report: dict = {"target": served.url, "pid": served.pid, "settings": settings.__dict__,
                        "methods_from": source, "methods": [m.path for m in methods], "models": vocab.models,
                        "rss_before_kib": served.rss_kib(), "log_bytes_before": served.log_bytes(), "passes": []}
        # the vocabulary and the cases' makers live all run long: keep them out of the collector's
        # full passes, whose pauses would show as calls answered late
        gc.collect()
        gc.freeze()
        for _ in range(settings.passes if settings.calls else 0):
            result = run_pass(caller, makers, settings)
            result.update(rss_after_kib=served.rss_kib(), log_bytes_after=served.log_bytes())
            report["passes"].append(result)
        if big_ids:
            from .fuzz_big import big_ids as check_big_ids

            report["big_ids"] = check_big_ids(served, big_ids, big_id_bytes, settings.concurrency)
        report["alive"] = alive(served)
        report["memory"] = memory(report)
        report["verdict"] = verdict(report)
        return report
    finally:
        channel.close()


def memory(report: dict) -> dict:
    """RSS growth as fractions: the second pass over the same calls against the first (what
    the first left behind for good shows as growth there), and the big-ids check."""
    out: dict = {}
    rss = [p.get("rss_after_kib") for p in report["passes"]]
    if len(rss) >= 2 and rss[0] and rss[1]:
        out["rss_growth_second_pass"] = round((rss[1] - rss[0]) / rss[0], 4)
    big = report.get("big_ids")
    if big and big.get("rss_before_kib") and big.get("rss_after_kib"):
        out["big_ids_rss_growth"] = round((big["rss_after_kib"] - big["rss_before_kib"]) / big["rss_before_kib"], 4)
        out["big_ids_log_bytes_added"] = (big.get("log_bytes_after") or 0) - (big.get("log_bytes_before") or 0)
        out["big_ids_data_bytes_added"] = (big.get("data_bytes_after") or 0) - (big.get("data_bytes_before") or 0)
    return out


def verdict(report: dict) -> dict:
    passes = report["passes"]
    return {"unknown": sum(p["unknown"] for p in passes), "internal": sum(p["internal"] for p in passes),
            "late": sum(p["late"] for p in passes), "deadline_exceeded": sum(p["deadline_exceeded"] for p in passes),
            "alive": report["alive"]["alive"]}


def summary(report: dict, limit: int = 40) -> str:
    """The problems in a few lines: for a test's failure message and the console."""
    lines = [f"verdict: {json.dumps(report['verdict'])}"]
    for n, result in enumerate(report["passes"], 1):
        for group in result["problems"][:limit]:
            lines.append(f"  pass {n} {group['code']} x{group['count']} {group['method']}: {group['message'][:120]!r}"
                         f" <- {group['mutations'][0][:110]}")
        for late in result["late_calls"][:5]:
            lines.append(f"  pass {n} late {late['method']} {late['code']} after {late['elapsed_s']} s "
                         f"<- {late['mutation'][:100]}")
        for method, count in result["deadline_exceeded_by_method"].items():
            lines.append(f"  pass {n} DEADLINE_EXCEEDED x{count} {method}")
    big = report.get("big_ids")
    if big:
        lines.append(f"  big ids: {big['calls']} x {big['user_id_bytes']} B user_id -> {big['codes']}; RSS "
                     f"{big['rss_before_kib']} -> {big['rss_after_kib']} KiB, log {big['log_bytes_before']} -> "
                     f"{big['log_bytes_after']} B, data {big['data_bytes_before']} -> {big['data_bytes_after']} B")
    if not report["alive"]["alive"]:
        lines.append(f"  not alive at the end: {report['alive']}")
    return "\n".join(lines)


def _parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    parser.add_argument("--target", help="host:port of a running server (default: start one on the demo world)")
    parser.add_argument("--pid", type=int, help="the running server's pid, for its memory")
    parser.add_argument("--server-log", type=Path, help="the running server's log file, for its size")
    parser.add_argument("--data-dir", type=Path, help="the running server's data directory, for its size")
    parser.add_argument("--demo-world", type=Path, help="the running server's demo_world folder (demo.json)")
    parser.add_argument("--workdir", type=Path, help="where a server started here keeps its demo world (reused; "
                                                     "default: a temporary folder, removed at the end)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per seed and pass (default 2000)")
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds (default 0)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--deadline", type=float, default=2.0, help="seconds, every call (default 2)")
    parser.add_argument("--slack", type=float, default=0.5, help="seconds past the deadline that count as late")
    parser.add_argument("--max-string-bytes", type=_parse_size, default=1 << 20, help="e.g. 1MiB (default)")
    parser.add_argument("--passes", type=int, default=1, help="run the same calls again (memory growth)")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per pass (default 600)")
    parser.add_argument("--destructive", action="store_true", help="may unload/reload the server's own models, and erase shoppers (Admin Forget)")
    parser.add_argument("--big-ids", type=int, default=0, help="then N Recommend calls with a huge user_id")
    parser.add_argument("--big-id-bytes", type=_parse_size, default=5 << 20, help="(default 5MiB)")
    args = parser.parse_args(argv)
    settings = Settings(args.calls, tuple(args.seed), args.concurrency, args.deadline, args.slack,
                        args.max_string_bytes, args.passes, args.time_limit, args.destructive)
    workdir = args.workdir or (None if args.target else Path(tempfile.mkdtemp(prefix="hanzo-fuzz-")))
    served, world = None, args.demo_world
    try:
        if args.target:
            from .fuzz_server import demo_manifest

            served = Served(args.target, args.pid, args.server_log, args.data_dir,
                            demo_manifest(world) if world else {})
        else:
            served = start_demo(workdir)
            world = workdir / "demo_world"
        report = fuzz(served, settings, world, args.big_ids, args.big_id_bytes)
        if served.process is not None:
            report["exit_status"] = stop(served.process)
    finally:
        if served is not None and served.process is not None:
            stop(served.process)
        if workdir is not None and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    write_report(args.out, report)
    print(summary(report))
    return 0 if not any(v for k, v in report["verdict"].items() if k != "alive") and report["verdict"]["alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
