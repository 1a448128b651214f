"""The nightly customer batch at scale: `hanzo score-customers` over a simulated shop of
`--customers` buyers (1,000,000 by default), timed and its peak memory measured, from a fresh
process as the nightly job runs.

The shop is simulated as the customer-base literature describes one: each customer buys at their
own rate (gamma across customers) until they leave, which they may do after any purchase (beta
across customers); they arrive over the first quarter and are observed for a year; each purchase
day's spend is gamma around their own mean. Events are written as the canonical JSON lines.

    python -m hanzo.loadtest.customer_batch --customers 1000000 --out loadtest/reports/customers-batch-1m.json
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from .reports import print_report

DAY_MS = 86_400_000
START_DAY = 19_723  # 2024-01-01


def simulate(customers: int, days: int, seed: int = 0):
    """(customer index, day, spend) of every purchase day, as arrays."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.25, 1 / 12.0, customers)  # purchase days per day
    leave = rng.beta(0.8, 2.5, customers)  # the chance of leaving after a purchase
    mean_spend = rng.gamma(4.0, 10.0, customers)
    when = rng.integers(0, days // 4, customers).astype(np.float64)  # the first purchase day
    who_parts, day_parts = [], []
    alive = np.arange(customers)
    while len(alive):
        who_parts.append(alive)
        day_parts.append(when[alive].astype(np.int64))
        stays = rng.random(len(alive)) >= leave[alive]
        alive = alive[stays]
        when[alive] += np.ceil(rng.exponential(1.0 / np.maximum(rate[alive], 1e-4)))
        alive = alive[when[alive] < days]
    who, day = np.concatenate(who_parts), np.concatenate(day_parts)
    spend = np.round(rng.gamma(6.0, mean_spend[who] / 6.0), 2)
    return who, day, spend


def write_events(path: Path, who: np.ndarray, day: np.ndarray, spend: np.ndarray) -> None:
    import gzip

    order = np.argsort(day, kind="stable")
    stamps = [f"{np.datetime64(START_DAY + d, 'D')}T00:00:00.000Z" for d in range(int(day.max()) + 1)]
    with gzip.open(path, "wb", compresslevel=1) as sink:
        for start in range(0, len(order), 100_000):
            rows = order[start:start + 100_000]
            sink.write(b"".join(orjson.dumps({
                "event_id": f"b{i}", "event_type": "purchase", "user_id": f"c{c:07d}", "session_id": f"c{c:07d}-{d}",
                "timestamp": stamps[d], "payload": {"amount": a, "quantity": 1}, "context": {}})
                + b"\n" for i, c, d, a in zip(rows.tolist(), who[rows].tolist(), day[rows].tolist(),
                                              spend[rows].tolist())))


def run(customers: int, days: int, horizon_days: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        events, out = Path(tmp) / "events.jsonl.gz", Path(tmp) / "scores.csv"
        who, day, spend = simulate(customers, days, seed)
        write_events(events, who, day, spend)
        as_of = str(np.datetime64(START_DAY + days - 1, "D"))
        command = [sys.executable, "-m", "hanzo.server.commands", "score-customers", "--events", str(events),
                   "--as-of", as_of, "--horizon-days", str(horizon_days), "--out", str(out)]
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rows = sum(1 for _ in open(out)) - 1
        return {"customers": customers, "purchase_days": len(who), "observed_days": days, "as_of": as_of,
                "horizon_days": horizon_days, "seed": seed, "scored": rows,
                "event_file_mib": round(events.stat().st_size / 2**20, 1), "seconds": round(seconds, 1),
                "peak_rss_mib": round(peak_kib / 1024, 1), "log": done.stderr.strip().splitlines()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--horizon-days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    print_report(run(args.customers, args.days, args.horizon_days, args.seed), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
