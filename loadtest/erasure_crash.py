"""`hanzo forget` killed (SIGKILL) at a random moment, then run again: in every round the store
must end with none of the shopper's events and every other event, whatever the moment.

    python -m hanzo.loadtest.erasure_crash --rounds 20 --out loadtest/reports/erasure-crash.json
        [--workdir DIR] [--events 200000] [--seed 7]

A store of `--events` product views (every 50th the shopper's, at merchant shop-a) is built
once; each round copies it, starts `hanzo forget`, kills it after a random delay drawn over the
erasure's own duration (measured first, unkilled), and runs it again. The report lists, per
round, whether the kill landed mid-rebuild (the staging directory was left) or after the swap,
what the second run removed, and the events and shopper events the log holds at the end."""
from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .reports import write_report

MERCHANT, SHOPPER, EVERY = "shop-a", "alice", 50


def build(base: Path, events: int) -> None:
    from hanzo.server.features.service import FeatureService, FeatureStoreConfig

    service = FeatureService(FeatureStoreConfig(data_dir=base, fsync="never", snapshot_every_events=10 ** 9))
    service.open()
    start = int(time.time() * 1000) - 3_600_000
    batch = []
    for i in range(events):
        user = SHOPPER if i % EVERY == 0 else f"u{i % 5000}"
        batch.append({"event_id": f"e{i}", "event_type": "product_view", "timestamp": start + i, "user_id": user,
                      "session_id": f"s-{user}", "payload": {"product_id": f"p{i % 300}"}, "context": {}})
        if len(batch) == 5000:
            service.ingest_blocking(batch, merchant=MERCHANT)
            batch = []
    service.ingest_blocking(batch, merchant=MERCHANT) if batch else None
    service.close()


def forget(store: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hanzo.server.commands", "forget", "--data-dir", str(store),
                             "--merchant", MERCHANT, "--user", SHOPPER], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def fresh_copy(base: Path, store: Path) -> None:
    shutil.rmtree(store, ignore_errors=True)
    for leftover in store.parent.glob(f".{store.name}.*"):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    shutil.copytree(base, store)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-erasure-crash"))
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from hanzo.server.features.offline import load_log_records

    base, store = args.workdir / "base", args.workdir / "store"
    if not base.exists():
        build(base, args.events)
    fresh_copy(base, store)
    started = time.monotonic()
    first = forget(store)
    first.communicate(timeout=600)
    duration = time.monotonic() - started
    rng = random.Random(args.seed)
    rounds = []
    for n in range(args.rounds):
        fresh_copy(base, store)
        process = forget(store)
        delay = rng.uniform(0.0, duration * 1.1)
        time.sleep(delay)
        killed = process.poll() is None
        if killed:
            process.send_signal(signal.SIGKILL)
        process.communicate()
        left = sorted(p.name for p in store.parent.glob(f".{store.name}.*") if p.is_dir())
        again = forget(store)
        out, err = again.communicate(timeout=600)
        records = load_log_records(store)
        row = {"round": n + 1, "delay_s": round(delay, 2), "killed": killed, "left_behind": left,
               "second_rc": again.returncode,
               "second_removed": json.loads(out)["events_removed"] if again.returncode == 0 else err[-300:],
               "events": len(records),
               "shopper_events": sum(1 for r in records if r.get("user_id") == f"{MERCHANT}|{SHOPPER}")}
        rounds.append(row)
        print(row, file=sys.stderr)
    expected = args.events - (args.events + EVERY - 1) // EVERY
    report = {"events": args.events, "expected_after": expected, "erasure_seconds": round(duration, 2),
              "rounds": rounds, "killed_mid_rebuild": sum(1 for r in rounds if r["left_behind"]),
              "killed": sum(1 for r in rounds if r["killed"]),
              "all_whole": all(r["second_rc"] == 0 and r["events"] == expected and r["shopper_events"] == 0
                               for r in rounds)}
    write_report(args.out, report)
    print({k: v for k, v in report.items() if k != "rounds"}, file=sys.stderr)
    return 0 if report["all_whole"] else 1


if __name__ == "__main__":
    sys.exit(main())
