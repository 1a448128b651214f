"""How much memory the embedded store needs for a long stream: a synthetic marketplace stream
(Zipf-distributed users and products, short sessions, orders with cards and devices) at a
stated scale, ingested through the real service (validation, dedup, log, store, snapshots with
eviction), reporting tables, dedup index and process RSS as it goes.

    python -m hanzo.loadtest.store_capacity --events 20000000 --data-dir /tmp/capacity
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from hanzo.server.features.service import FeatureService, FeatureStoreConfig

from .reports import write_report

DAY_MS = 86_400_000


def synthetic_batches(events: int, users: int, products: int, days: int, batch: int, seed: int = 0):
    """Batches of records in event-time order: sessions of ~8 events, 3% orders."""
    rng = np.random.default_rng(seed)
    start = 1_767_571_200_000  # 2026-01-05
    span = days * DAY_MS
    user_weights = 1.0 / np.arange(1, users + 1) ** 0.8
    user_weights /= user_weights.sum()
    product_weights = 1.0 / np.arange(1, products + 1) ** 0.9
    product_weights /= product_weights.sum()
    sessions = events // 8
    emitted = 0
    session = 0
    while emitted < events:
        n_sessions = max(1, batch // 8)
        t0 = start + (session * span) // sessions
        owners = rng.choice(users, size=n_sessions, p=user_weights)
        picks = iter(rng.choice(products, size=n_sessions * 8, p=product_weights).tolist())
        rolls = iter(rng.random(n_sessions * 8).tolist())
        records = []
        for k in range(n_sessions):
            session += 1
            user = f"u{owners[k]}"
            sid = f"s{session}"
            t = t0 + k
            for _ in range(8):
                emitted += 1
                roll = next(rolls)
                product = f"p{next(picks)}"
                if roll < 0.03:
                    records.append({"event_id": f"e{emitted}", "event_type": "order", "timestamp": t, "user_id": user,
                                    "session_id": sid, "payload": {"order_id": f"o{emitted}", "amount": 25.0,
                                                                   "card_id": f"c{owners[k]}", "device_id":
                                                                   f"d{owners[k]}", "shipping_address_id":
                                                                   f"a{owners[k]}"}, "context": {}})
                elif roll < 0.08:
                    records.append({"event_id": f"e{emitted}", "event_type": "purchase", "timestamp": t,
                                    "user_id": user, "session_id": sid, "payload": {"product_id": product,
                                                                                     "quantity": 1.0, "price": 9.5},
                                    "context": {}})
                else:
                    records.append({"event_id": f"e{emitted}", "event_type": "product_view", "timestamp": t,
                                    "user_id": user, "session_id": sid, "payload": {"product_id": product},
                                    "context": {}})
                t += 30_000
        yield records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--users", type=int, default=300_000)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    shutil.rmtree(args.data_dir, ignore_errors=True)
    service = FeatureService(FeatureStoreConfig(data_dir=args.data_dir, fsync="never",
                                                snapshot_every_events=2_000_000, max_future_seconds=10**10))
    service.open()
    started = time.monotonic()
    rows = []
    next_report = 1_000_000
    for records in synthetic_batches(args.events, args.users, args.products, args.days, args.batch):
        service.ingest_blocking(records)
        if service.applied_seq >= next_report:
            rows.append(_measure(service, started))
            print(json.dumps(rows[-1]), flush=True)
            next_report += 1_000_000
    service.snapshot()
    rows.append(_measure(service, started))
    print(json.dumps(rows[-1]), flush=True)
    service.close()
    if args.out:
        write_report(args.out, {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows})
    return 0


def _measure(service: FeatureService, started: float) -> dict:
    store = service.store
    return {"events": service.applied_seq, "seconds": round(time.monotonic() - started, 1),
            "tables_mb": round(store.nbytes() / 1e6, 1), "dedup_mb": round(service.dedup.nbytes() / 1e6, 1),
            "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1),
            "entities": {name: len(index) for name, index in store.entities.items()},
            "log_mb": round(service.log.size_bytes() / 1e6, 1)}


if __name__ == "__main__":
    raise SystemExit(main())
