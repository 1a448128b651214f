"""What a snapshot of a big store costs the requests served meanwhile.

    python -m hanzo.loadtest.store_capacity --events 20000000 --data-dir DIR   # the store, once
    python -m hanzo.loadtest.snapshot_pause --data-dir DIR --out loadtest/reports/snapshot-pause-20m.json
        [--rate 500] [--seconds 60] [--server-cpus 0 --client-cpus 1]

A server is started on the store (its own CPUs), and GetFeatures for random users is driven
open loop at `--rate` twice, for the same length of time: in the first run a batch of events
comes in that leaves the next snapshot not yet due; in the second the same-sized batch makes it
due, so a snapshot of the whole store is written while the load goes on. Latency is from each
call's due time (coordinated omission corrected). Reported per run: the percentiles of the
whole run, and of the calls due while the snapshot was written (in the first run: the same
stretch of time after the batch), the pause the server itself logged, and how long the
snapshot took."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import msgpack
import numpy as np
from hdrh.histogram import HdrHistogram

from hanzo.server.features import snapshots
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

from .openloop import LoadResult, LoadSpec, new_histogram, parse_cpus, run_load
from .readiness import wait_until_ready
from .reports import print_report
from .runner import summarize
from .targets import free_port

BATCH = 500  # events in each run's batch; snapshots come every 2 batches
START_LIMIT_S = 900  # loading a 20 M-event store reads gigabytes
SERIES_S = 0.1
WARMUP_S = 2.0


def _store_state(data: Path) -> dict:
    newest = snapshots.snapshot_dirs(data / "snapshots")
    if not newest:
        raise SystemExit(f"{data} holds no snapshot: build the store first (hanzo.loadtest.store_capacity)")
    state = msgpack.unpackb((newest[-1] / "state.msgpack").read_bytes(), raw=False, strict_map_key=False)
    return {"watermark": state["watermark"], "users": state["entities"]["user"], "seq": state["applied_seq"]}


def _serve(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen, str]:
    config = workdir / "snapshot-pause.toml"
    config.write_text(f"[features]\nsnapshot_every_events = {2 * BATCH}\n")
    (workdir / "model_repo").mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "hanzo.server.commands", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--no-demo-models", "--model-repo", str(workdir / "model_repo"), "--data-dir", str(args.data_dir),
               "--config", str(config)]
    cpus = parse_cpus(args.server_cpus)
    if cpus:
        command = ["taskset", "-c", ",".join(map(str, cpus)), *command]
    log = open(workdir / "serve.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=log)
    url = f"127.0.0.1:{port}"
    wait_until_ready(url, process, START_LIMIT_S, lambda: (workdir / "serve.log").read_text()[-3000:])
    return process, url


def _batch(state: dict, run: int) -> commerce_pb2.EventBatch:
    """BATCH product views just after the store's clock (new ids each run)."""
    from hanzo.server.features.events import record_to_proto

    token = f"{time.time_ns():x}"  # the store may have taken an earlier invocation's batches
    request = commerce_pb2.EventBatch(request_id=f"pause-{token}-{run}")
    for i in range(BATCH):
        record_to_proto({"event_id": f"pause-{token}-{run}-{i}", "event_type": "product_view",
                         "timestamp": state["watermark"] + 1000 * run + i, "user_id": state["users"][i],
                         "session_id": f"pause-{run}", "payload": {"product_id": f"p{i}"}, "context": {}},
                        request.events.add())
    return request


def _one_run(args: argparse.Namespace, url: str, state: dict, run: int, data: Path, server_pid: int) -> dict:
    """One run's load with its batch; its result and the moments that mark it (perf ns)."""
    rng = np.random.default_rng(run)
    users = state["users"]
    bodies = tuple(commerce_pb2.FeaturesRequest(entity="user", entity_ids=[users[int(i)]]).SerializeToString()
                   for i in rng.integers(0, len(users), 2000))
    spec = LoadSpec(url, "/hanzo.v1.Commerce/GetFeatures", bodies[0], mode="poisson", requests=bodies,
                    rate=args.rate, duration_s=args.seconds, warmup_s=WARMUP_S, timeout_s=5.0, seed=run,
                    cpus=parse_cpus(args.client_cpus), series_s=SERIES_S)
    holder: dict[str, LoadResult] = {}
    load = threading.Thread(target=lambda: holder.update(result=run_load(spec)))
    before = {p.name for p in snapshots.snapshot_dirs(data / "snapshots")}
    load.start()
    time.sleep(WARMUP_S + args.batch_after)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(url))
    sent = time.perf_counter_ns()
    stub.IngestEvents(_batch(state, run), timeout=30)
    acked = time.perf_counter_ns()
    written = child_seen = child_gone = None
    while load.is_alive():
        now = time.perf_counter_ns()
        if written is None and {p.name for p in snapshots.snapshot_dirs(data / "snapshots")} - before:
            written = now
        children = _children(server_pid)
        if children and child_seen is None:
            child_seen = now
        elif not children and child_seen is not None and child_gone is None:
            child_gone = now
        time.sleep(0.01)
    load.join()
    return {"result": holder["result"], "sent": sent, "acked": acked, "written": written, "child_gone": child_gone}


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def _summary(run: dict, window_ns: int) -> dict:
    result = run["result"]
    return {"batch_ack_ms": round((run["acked"] - run["sent"]) / 1e6, 2),
            "snapshot_s": round((run["written"] - run["sent"]) / 1e9, 2) if run["written"] else None,
            "child_s": round((run["child_gone"] - run["sent"]) / 1e9, 2) if run["child_gone"] else None,
            "worst": _worst(result, run["sent"]),
            "sent": result.sent, "ok": result.ok, "errors": result.errors, "whole": summarize(result.corrected),
            "window": _window(result, run["sent"], run["sent"] + window_ns)}


def _window(result: LoadResult, from_ns: int, to_ns: int) -> dict:
    """The due-time latencies of the calls due between two moments (perf_counter_ns)."""
    measure_from = result.start_ns + int(WARMUP_S * 1e9)
    bucket_ns = int(SERIES_S * 1e9)
    histogram: HdrHistogram = new_histogram()
    for bucket in result.second_latency_us[max(0, (from_ns - measure_from) // bucket_ns):
                                           max(0, (to_ns - measure_from) // bucket_ns + 1)]:
        for value in bucket:
            histogram.record_value(max(1, value))
    return {"seconds": round((to_ns - from_ns) / 1e9, 2), "calls": histogram.get_total_count(),
            **summarize(histogram)}


def _worst(result: LoadResult, sent_ns: int, count: int = 5) -> list[dict]:
    """The slowest calls' buckets, placed in time from the batch (negative: before it)."""
    measure_from = result.start_ns + int(WARMUP_S * 1e9)
    peaks = sorted(((max(bucket), i) for i, bucket in enumerate(result.second_latency_us) if bucket), reverse=True)
    return [{"at_s": round((measure_from + i * SERIES_S * 1e9 - sent_ns) / 1e9, 1), "max_ms": round(peak / 1000, 2)}
            for peak, i in peaks[:count]]


def _logged_pause(workdir: Path) -> float | None:
    for line in reversed((workdir / "serve.log").read_text().splitlines()):
        if '"paused_ms"' in line:
            try:
                return json.loads(line[line.index("{"):]).get("paused_ms")
            except ValueError:
                return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="a store built by hanzo.loadtest.store_capacity")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-snapshot-pause"))
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0, help="each run's measured length")
    parser.add_argument("--batch-after", type=float, default=5.0, help="seconds into the run the batch comes")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    state = _store_state(args.data_dir)
    process, url = _serve(args, args.workdir)
    try:
        quiet = _one_run(args, url, state, 1, args.data_dir, process.pid)
        during = _one_run(args, url, state, 2, args.data_dir, process.pid)
        pause_ms = _logged_pause(args.workdir)
    finally:
        process.terminate()
        process.wait(timeout=600)
    if during["written"] is None or during["child_gone"] is None:
        raise SystemExit("no snapshot was written during the second run: make --seconds longer")
    window = during["child_gone"] - during["sent"]  # both runs: from the batch to the child's exit
    report = {"events_in_store": state["seq"], "users": len(state["users"]), "rate": args.rate,
              "seconds": args.seconds, "server_cpus": args.server_cpus, "client_cpus": args.client_cpus,
              "fork_pause_ms": pause_ms, "without_snapshot": _summary(quiet, window),
              "with_snapshot": _summary(during, window)}
    report["p99_ratio"] = round(report["with_snapshot"]["window"]["p99"] / report["without_snapshot"]["window"]["p99"],
                                2)
    print_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
