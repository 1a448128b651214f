"""Crash rounds: ingestion and snapshots cut by SIGKILL or by a simulated power loss, round after
round on one store, and what an acknowledgement was worth.

    python -m hanzo.loadtest.crash_rounds --mode power --rounds 20 --out loadtest/reports/crash-power.json
        [--mode sigkill] [--kill-in snapshot] [--snapshot-every 300] [--batch 100] [--seed 0] [--workdir DIR]

A simulated marketplace's events are streamed in batches through IngestEvents, as a client
would: a batch not acknowledged is sent again after the restart. Snapshots come every
`--snapshot-every` events, so kills land in them too. Each round the server is killed at a
random moment (SIGKILL, at a random count of acknowledged batches plus a random delay), or
with `--kill-in snapshot` the moment a snapshot's staging directory appears. In
`power` mode the server runs under the durable-image layer (durable_image.py) and the next
round starts on the directory rebuilt from what had been fsynced only; in `sigkill` mode on
the same directory. Per round: whether the server started on what the crash left, the
acknowledged events missing from the log (lost) and the event ids found twice in it. At the
end the rest is streamed, and the online features of sampled users and products are compared
with the offline join over the log (an event applied twice or lost would show)."""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

from .reports import print_report
from .readiness import wait_until_ready
from .targets import free_port

START_LIMIT_S = 120.0


class Stream:
    """The client: batches in order, each sent until acknowledged."""

    def __init__(self, events: list[dict], batch: int) -> None:
        from hanzo.server.features.events import record_to_proto

        self.batches: list[commerce_pb2.EventBatch] = []
        for start in range(0, len(events), batch):
            request = commerce_pb2.EventBatch(request_id=f"b{start}")
            for record in events[start:start + batch]:
                record_to_proto(record, request.events.add())
            self.batches.append(request)
        self.acked: set[str] = set()
        self.next = 0

    def send_next(self, stub: commerce_pb2_grpc.CommerceStub) -> None:
        """The first batch not yet acknowledged, once; grpc.RpcError when it is not."""
        request = self.batches[self.next]
        stub.IngestEvents(request, timeout=30)
        self.acked.update(e.event_id for e in request.events)
        self.next += 1

    def run(self, url: str) -> int:
        """Send from the first batch not yet acknowledged; the batches acknowledged this time."""
        stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(url))
        done = 0
        while self.next < len(self.batches):
            try:
                self.send_next(stub)
            except grpc.RpcError:
                return done
            done += 1
        return done


def simulated_events(world: Path, days: int, seed: int, users: int, products: int) -> list[dict]:
    """A simulated marketplace written to `world`, and its events before the end of its last
    day (chargebacks land weeks later)."""
    from hanzo.server.features.formats import read_records
    from hanzo.training.simulator import SimulationConfig, simulate

    sim = simulate(SimulationConfig(days=days, seed=seed, users=users, products=products, fraud_level=10), world)
    end = sim.start_ms + days * 86_400_000
    return [r for r in read_records(world / "events.jsonl.gz") if r["timestamp"] < end]


def _config(workdir: Path, snapshot_every: int) -> Path:
    path = workdir / "crash.toml"
    # the replica's name in Redis, fixed: the data directory's path changes with each rebuild
    path.write_text(f"[features]\nsnapshot_every_events = {snapshot_every}\nreplica = \"crash-rounds\"\n")
    return path


def start(workdir: Path, data: Path, world: Path, config: Path, shadow: Path | None,
          redis_url: str | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-demo-models", "--drain-delay", "0",
            "--model-repo", str(workdir / "model_repo"), "--data-dir", str(data), "--catalog",
            str(world / "catalog.jsonl"), "--config", str(config)]
    if redis_url:
        args += ["--feature-backend", "redis", "--redis-url", redis_url]
    prefix = ["-m", "hanzo.server.commands"]
    if shadow is not None:
        prefix = ["-m", "hanzo.loadtest.durable_image", "--root", str(data), "--shadow", str(shadow), "--"]
    (workdir / "model_repo").mkdir(exist_ok=True)
    log = open(workdir / "serve.log", "a")
    process = subprocess.Popen([sys.executable, *prefix, *args], stdout=log, stderr=log, cwd=workdir)
    url = f"127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, START_LIMIT_S, lambda: (workdir / "serve.log").read_text()[-3000:])
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, url


def check_log(data: Path, acked: set[str]) -> dict:
    from hanzo.server.features.log import replay_log

    logged = [r["event_id"] for _, batch in replay_log(data / "log") for r in batch]
    unique = set(logged)
    return {"logged": len(logged), "lost": len(acked - unique), "twice": len(logged) - len(unique)}


def one_round(k: int, args: argparse.Namespace, stream: Stream, data: Path, world: Path, config: Path,
              rng: random.Random) -> tuple[dict, Path]:
    shadow = args.workdir / f"shadow-{k}" if args.mode == "power" else None
    started = time.monotonic()
    process, url = start(args.workdir, data, world, config, shadow, args.redis_url)
    entry = {"round": k, "started_s": round(time.monotonic() - started, 2), "from_batch": stream.next}
    kill_after = rng.randint(1, args.max_batches)
    sender = threading.Thread(target=stream.run, args=(url,))
    sender.start()
    target = stream.next + kill_after
    in_snapshot = args.kill_in == "snapshot"
    snapshots = data / "snapshots"
    stale = set(snapshots.glob(".staging-*"))  # left by an earlier crash: not this round's

    def writing() -> bool:
        return any(path not in stale for path in snapshots.glob(".staging-*"))

    while stream.next < min(target, len(stream.batches)) and sender.is_alive():
        if in_snapshot and writing():
            break  # a snapshot is being written: now
        time.sleep(0.0005)
    else:
        time.sleep(rng.uniform(0, 0.05))
    entry["during_snapshot"] = writing()
    process.send_signal(signal.SIGKILL)
    process.wait()
    sender.join(60)
    entry["acked_batches"] = stream.next
    if shadow is not None:
        from .durable_image import rebuild

        data = rebuild(shadow, args.workdir / f"data-{k + 1}")
    entry.update(check_log(data, stream.acked))
    return entry, data


def final_check(args: argparse.Namespace, stream: Stream, data: Path, world: Path, config: Path) -> dict:
    """The rest streamed, then online features against the offline join over the log."""
    process, url = start(args.workdir, data, world, config, None, args.redis_url)
    try:
        stream.run(url)
        return {**check_log(data, stream.acked), "all_acked": len(stream.acked), **compare_online(url, data, world)}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def compare_online(url: str, data: Path, world: Path, per_entity: int = 80) -> dict:
    """Online features of sampled users and products against the offline join over the log
    (an event applied twice, or lost from the store while still in the log, would show)."""
    from hanzo.server.features.definitions import FEATURES
    from hanzo.server.features.offline import get_historical_features, load_log_records

    records = load_log_records(data)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(url))
    mismatched = compared = 0
    for entity, field in (("user", "user_id"), ("product", "product_id")):
        keys = sorted({(r.get(field) if entity == "user" else r["payload"].get(field)) for r in records} - {None})
        keys = keys[:per_entity]
        reply = stub.GetFeatures(commerce_pb2.FeaturesRequest(entity=entity, entity_ids=keys), timeout=30)
        columns = len(reply.columns)
        online = np.frombuffer(reply.values, np.float32).reshape(len(keys), columns)
        missing = np.frombuffer(reply.missing, np.uint8).reshape(len(keys), columns)
        names = [f.name for f in FEATURES if f.entity == entity]
        offline = get_historical_features(records, entity, [(key, reply.as_of.ToMilliseconds()) for key in keys],
                                          names, catalog=world / "catalog.jsonl")
        same = (online == offline.values) & (missing == offline.missing)
        mismatched += int((~same).any(axis=1).sum())
        compared += len(keys)
    return {"rows_compared": compared, "rows_mismatched": mismatched}


def run(args: argparse.Namespace) -> dict:
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.redis_url:
        import redis

        redis.Redis.from_url(args.redis_url).flushall()
    world = args.workdir / "world"
    events = simulated_events(world, args.days, args.seed, users=400, products=150)
    stream, rng = Stream(events, args.batch), random.Random(args.seed)
    config, data = _config(args.workdir, args.snapshot_every), args.workdir / "data-0"
    rounds = []
    for k in range(args.rounds):
        if stream.next >= len(stream.batches):
            break
        entry, data = one_round(k, args, stream, data, world, config, rng)
        rounds.append(entry)
    final = final_check(args, stream, data, world, config)
    return {"mode": args.mode, "kill_in": args.kill_in, "backend": "redis" if args.redis_url else "embedded", "events": len(events), "batch": args.batch,
            "snapshot_every": args.snapshot_every, "rounds": len(rounds),
            "killed_during_snapshot": sum(r["during_snapshot"] for r in rounds), "lost": sum(r["lost"] for r in rounds) + final["lost"],
            "twice": max([r["twice"] for r in rounds] + [final["twice"]]), "final": final, "per_round": rounds}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.crash_rounds", description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("sigkill", "power"), default="power")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100, help="events a batch")
    parser.add_argument("--snapshot-every", type=int, default=300, help="events between snapshots")
    parser.add_argument("--max-batches", type=int, default=6, help="a round is killed within this many acks")
    parser.add_argument("--kill-in", choices=("any", "snapshot"), default="any",
                        help="snapshot: kill the moment a snapshot is being written (else at the random point)")
    parser.add_argument("--days", type=int, default=14, help="the simulated history's length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redis-url", help="Redis mode: the store's tables in this (running) Redis, flushed first")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-crash"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = run(args)
    if args.out is None:
        report = {k: v for k, v in report.items() if k != "per_round"}
    return print_report(report, args.out)


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    main()
