"""What erasing one shopper costs a running server: `hanzo serve` on a large store, open-loop
reads (GetFeatures of known users) and writes (IngestEvents batches) at steady rates, and the
Admin Forget RPC of the heaviest shopper a while into the load. The report gives, for the
reads and the writes apart, p50 / p99 / p99.9 (from each call's due time) and the answers by
status code before, during and after the erasure, the longest run of seconds in which writes
were refused (the pause while the rebuilt store is swapped in), the receipt and the server's
peak RSS.

    python -m hanzo.loadtest.erasure_live --data-dir /big/store --out loadtest/reports/erasure-live-20m.json
        [--read-rate 200] [--write-rate 20] [--before 30] [--load-seconds 1000]
        [--server-cpus 0 --client-cpus 1]

The store is changed: the shopper is erased from it."""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from hanzo.v1 import admin_pb2, admin_pb2_grpc, commerce_pb2

from .erasure_cost import busiest_user
from .fuzz_server import rss_kib, stop
from .readiness import wait_until_ready
from .openloop import LoadResult, LoadSpec, parse_cpus, run_load
from .reports import write_report
from .targets import free_port

EVENTS_PER_WRITE = 5


def _users(data_dir: Path, n: int = 2000) -> list[str]:
    from hanzo.server.features.log import replay_log

    seen: dict[str, None] = {}
    for _, records in replay_log(data_dir / "log"):
        seen.update((r["user_id"], None) for r in records if r.get("user_id"))
        if len(seen) >= n:
            break
    return list(seen)[:n]


def _bodies(users: list[str], writes: int, run: str) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    reads = tuple(commerce_pb2.FeaturesRequest(entity="user", entity_ids=[u]).SerializeToString() for u in users)
    rng = np.random.default_rng(3)
    out = []
    for i in range(writes):  # each batch its own event ids: a write is never a duplicate
        batch = commerce_pb2.EventBatch()
        for j in range(EVENTS_PER_WRITE):
            e = batch.events.add(event_id=f"live-{run}-{i}-{j}", event_type="product_view",
                                 user_id=users[int(rng.integers(len(users)))], session_id=f"live-{run}-{i}")
            e.timestamp.GetCurrentTime()
            e.payload.product_id = f"p{int(rng.integers(1000))}"
        out.append(batch.SerializeToString())
    return reads, tuple(out)


def _load(spec: LoadSpec, out) -> None:
    out.put(run_load(spec).encode())


def _phase(result: LoadResult, first: int, last: int) -> dict:
    """Seconds [first, last) of a load's series: calls due, answered, failed, due-time percentiles."""
    latencies = [v for s in result.second_latency_us[first:last] for v in s]
    out = {"seconds": max(0, last - first), "due": sum(result.second_sent[first:last]),
           "ok": sum(result.second_ok[first:last]), "failed": sum(result.second_errors[first:last])}
    if latencies:
        values = np.asarray(latencies, np.float64) / 1000
        out.update({f"p{q}_ms": round(float(np.percentile(values, q)), 3) for q in (50, 99, 99.9)})
    return out


def _longest_refusal(result: LoadResult) -> int:
    longest = run = 0
    for failed in result.second_errors:
        run = run + 1 if failed else 0
        longest = max(longest, run)
    return longest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--read-rate", type=float, default=200.0)
    parser.add_argument("--write-rate", type=float, default=20.0)
    parser.add_argument("--before", type=float, default=30.0, help="seconds of load before the erasure")
    parser.add_argument("--load-seconds", type=float, default=1000.0)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    server_cpus, client_cpus = parse_cpus(args.server_cpus), parse_cpus(args.client_cpus)
    user = busiest_user(args.data_dir)
    users = _users(args.data_dir)
    reads, writes = _bodies(users, int(args.write_rate * (args.load_seconds + 10)) + 100, str(int(time.time())))
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="hanzo-erasure-live-"))
    cmd = ["taskset", "-c", ",".join(map(str, server_cpus)), sys.executable, "-m", "hanzo.server.commands", "serve",
           "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(args.data_dir), "--no-demo-models",
           "--model-repo", str(workdir / "model_repo")]
    with open(workdir / "serve.log", "w") as log:
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, cwd=workdir)
    url = f"127.0.0.1:{port}"
    try:
        wait_until_ready(url, server, 1800, lambda: (workdir / "serve.log").read_text()[-3000:])
        report = _measure(args, url, reads, writes, user, client_cpus)
        report["server_peak_rss_mib"] = _peak_rss_mib(server.pid)
        report["server_rss_after_mib"] = round((rss_kib(server.pid) or 0) / 1024)
    finally:
        stop(server, timeout=600)
    write_report(args.out, report)
    print({k: v for k, v in report.items() if k != "receipt"}, file=sys.stderr)
    return 0


def _measure(args, url: str, reads: tuple[bytes, ...], writes: tuple[bytes, ...], user: str,
             client_cpus: tuple[int, ...]) -> dict:
    common = dict(url=url, request=b"", mode="poisson", duration_s=args.load_seconds, warmup_s=0.0, timeout_s=5.0,
                  cpus=client_cpus)
    specs = {"reads": LoadSpec(method="/hanzo.v1.Commerce/GetFeatures", requests=reads, rate=args.read_rate, **common),
             "writes": LoadSpec(method="/hanzo.v1.Commerce/IngestEvents", requests=writes, rate=args.write_rate,
                                seed=1, **common)}
    ctx = mp.get_context("spawn")
    queues = {name: ctx.Queue() for name in specs}
    loads = {name: ctx.Process(target=_load, args=(spec, queues[name]), daemon=True) for name, spec in specs.items()}
    for process in loads.values():
        process.start()
    time.sleep(args.before)
    admin = admin_pb2_grpc.AdminStub(grpc.insecure_channel(url))
    began = time.perf_counter_ns()
    answer = admin.Forget(admin_pb2.ForgetRequest(user_id=user), timeout=3 * 3600)
    ended = time.perf_counter_ns()
    results = {name: LoadResult.decode(queues[name].get()) for name in specs}
    for process in loads.values():
        process.join()
    report = {"read_rate": args.read_rate, "write_rate": args.write_rate, "events_per_write": EVENTS_PER_WRITE,
              "erasure_seconds": round((ended - began) / 1e9, 1), "receipt": {
                  k: v for k, v in json.loads(answer.receipt_json).items() if k != "user"}}
    for name, result in results.items():
        start = result.start_ns
        first, last = int((began - start) / 1e9), int((ended - start) / 1e9) + 1
        report[name] = {"before": _phase(result, 0, first), "during": _phase(result, first, last),
                        "after": _phase(result, last, len(result.second_sent)), "errors": result.errors,
                        "longest_failing_run_s": _longest_refusal(result),
                        "load_outlasted_erasure": last < len(result.second_sent)}
    return report


def _peak_rss_mib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        return None
    return None


if __name__ == "__main__":
    sys.exit(main())
