"""What erasing one shopper costs on a large store: `hanzo forget` (server/features/erasure.py)
on a data directory, timed, with its receipt and the peak memory of the process.

    python -m hanzo.loadtest.erasure_cost --data-dir /big/store --out loadtest/reports/erasure-20m.json
        [--user U] [--merchant M]

Without --user, the shopper with the most events in the log's first segment is erased (a
heavy one). The store must not be in use: erasure rebuilds it (the server is stopped meanwhile,
so the wall time is that store's downtime)."""
from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import Counter
from pathlib import Path

from .reports import write_report


def busiest_user(data_dir: Path) -> str:
    from hanzo.server.features.log import replay_log

    counts: Counter = Counter()
    for first, records in replay_log(data_dir / "log"):
        counts.update(r["user_id"] for r in records if r.get("user_id"))
        if sum(counts.values()) > 200_000:
            break
    return counts.most_common(1)[0][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--user", default="")
    parser.add_argument("--merchant", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from hanzo.server.features.erasure import forget
    from hanzo.server.features.log import replay_log
    from hanzo.server.features.service import FeatureStoreConfig

    user = args.user or busiest_user(args.data_dir)
    events_before = sum(len(records) for _, records in replay_log(args.data_dir / "log"))
    size_before = sum(p.stat().st_size for p in args.data_dir.rglob("*") if p.is_file())
    started = time.monotonic()
    receipt = forget(FeatureStoreConfig(data_dir=args.data_dir), args.merchant, user)
    seconds = time.monotonic() - started
    size_after = sum(p.stat().st_size for p in args.data_dir.rglob("*") if p.is_file())
    report = {"events_before": events_before, "bytes_before": size_before, "bytes_after": size_after,
              "seconds": round(seconds, 1), "events_per_second": round(events_before / seconds),
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "receipt": {k: v for k, v in receipt.items() if k != "user"}}
    write_report(args.out, report)
    print(report, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
