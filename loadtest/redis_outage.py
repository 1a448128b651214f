"""A Redis outage under load, for real: redis-server killed (SIGKILL) under a running Hanzo in
Redis mode, away for `--outage-s`, then started again on its own files.

    python -m hanzo.loadtest.redis_outage --out loadtest/reports/redis-outage.json
        [--outage-s 10] [--batches-per-s 10] [--reads-per-s 100] [--workdir DIR]

redis-server runs with `appendonly yes` and `appendfsync always` (what exactly-once across a
Redis crash relies on). A simulated marketplace's events are streamed through IngestEvents in
batches of 100 at a steady pace, each batch sent until it is acknowledged, as a client would;
beside it GetFeatures for the world's users at `--reads-per-s`. Every call's answer code and
latency is kept. Reported: the codes while Redis is away (UNAVAILABLE naming Redis expected;
never INTERNAL or UNKNOWN, never a hang), how long after Redis is back the first batch and the
first read succeed, and, once the stream has ended on the same server (no restart), every
acknowledged event in the log once and the online features of sampled users and products
equal to the offline join over the log."""
from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc

from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

from .crash_rounds import Stream, _config, check_log, compare_online, simulated_events, start
from .reports import print_report
from .targets import free_port


def start_redis(port: int, directory: Path) -> subprocess.Popen:
    import redis

    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                                "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir",
                                str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    for _ in range(400):
        try:
            if client.ping():
                return process
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


class Calls:
    """(moment, kind, code, seconds) of every call, from several threads."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, str, str, float]] = []
        self.messages: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, kind: str, code: str, started: float, message: str = "") -> None:
        with self._lock:
            self.rows.append((started, kind, code, time.monotonic() - started))
            if message and code not in self.messages:
                self.messages[code] = message[:300]


def ingest(stream: Stream, url: str, calls: Calls, per_s: float, stop: threading.Event) -> None:
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(url))
    next_due = time.monotonic()
    while stream.next < len(stream.batches) and not stop.is_set():
        next_due = max(next_due + 1 / per_s, time.monotonic() - 1)
        started = time.monotonic()
        try:
            stream.send_next(stub)
            calls.add("IngestEvents", "OK", started)
        except grpc.RpcError as exc:
            calls.add("IngestEvents", exc.code().name, started, exc.details() or "")
        time.sleep(max(0.0, next_due - time.monotonic()))


def read(url: str, users: list[str], calls: Calls, per_s: float, stop: threading.Event) -> None:
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(url))
    k = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            stub.GetFeatures(commerce_pb2.FeaturesRequest(entity="user", entity_ids=[users[k % len(users)]]),
                             timeout=2)
            calls.add("GetFeatures", "OK", started)
        except grpc.RpcError as exc:
            calls.add("GetFeatures", exc.code().name, started, exc.details() or "")
        k += 1
        time.sleep(max(0.0, started + 1 / per_s - time.monotonic()))


def summary(calls: Calls, killed: float, back: float) -> dict:
    out: dict = {}
    for kind in ("IngestEvents", "GetFeatures"):
        rows = [r for r in calls.rows if r[1] == kind]
        away = [r for r in rows if killed <= r[0] < back]
        codes: dict[str, int] = {}
        for r in away:
            codes[r[2]] = codes.get(r[2], 0) + 1
        first_ok = min((r[0] + r[3] for r in rows if r[0] >= back and r[2] == "OK"), default=None)
        refused = sorted(r[3] for r in away if r[2] != "OK")
        out[kind] = {"calls": len(rows), "while_away": codes,
                     "refusal_p99_ms": round(refused[int(0.99 * (len(refused) - 1))] * 1000, 1) if refused else None,
                     "refusal_max_ms": round(refused[-1] * 1000, 1) if refused else None,
                     "recovered_s": round(first_ok - back, 3) if first_ok is not None else None,
                     "failed_after_recovery": sum(1 for r in rows if first_ok and r[0] > first_ok and r[2] != "OK")}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.redis_outage", description=__doc__.split("\n")[0])
    parser.add_argument("--outage-s", type=float, default=10.0)
    parser.add_argument("--before-s", type=float, default=5.0, help="load before Redis is killed")
    parser.add_argument("--batches-per-s", type=float, default=10.0)
    parser.add_argument("--reads-per-s", type=float, default=100.0)
    parser.add_argument("--days", type=int, default=40, help="the simulated history's length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-redis-outage"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    port = free_port()
    redis_dir = args.workdir / "redis"
    redis = start_redis(port, redis_dir)
    world = args.workdir / "world"
    events = simulated_events(world, args.days, args.seed, users=400, products=150)
    users = sorted({e["user_id"] for e in events if e.get("user_id")})
    stream, calls, stop = Stream(events, 100), Calls(), threading.Event()
    data = args.workdir / "data"
    process, url = start(args.workdir, data, world, _config(args.workdir, 2000), None, f"redis://127.0.0.1:{port}/0")
    try:
        threads = [threading.Thread(target=ingest, args=(stream, url, calls, args.batches_per_s, stop)),
                   threading.Thread(target=read, args=(url, users, calls, args.reads_per_s, stop))]
        for thread in threads:
            thread.start()
        time.sleep(args.before_s)
        killed = time.monotonic()
        redis.send_signal(signal.SIGKILL)
        redis.wait()
        time.sleep(args.outage_s)
        redis = start_redis(port, redis_dir)
        back = time.monotonic()
        threads[0].join(timeout=600)  # the stream to its end, on the same server
        stop.set()
        threads[1].join(timeout=30)
        report = {"outage_s": args.outage_s, "batches_per_s": args.batches_per_s, "reads_per_s": args.reads_per_s,
                  "events": len(events), "acknowledged": len(stream.acked), "messages": calls.messages,
                  **summary(calls, killed, back)}
        report.update(check_log(data, stream.acked))
        report.update(compare_online(url, data, world))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        redis.kill()
        redis.wait()
    return print_report(report, args.out)


if __name__ == "__main__":
    main()
