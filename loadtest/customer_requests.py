"""ScoreCustomers under load: requests of `--per-request` customers each, drawn from the buyers
of an event file, in a shuffled order.

    hanzo score-customers --events EVENTS --as-of DAY --horizon-days 90 --out DIR/scores.csv --save-model DIR/model
    python -m hanzo.loadtest.customer_requests --events EVENTS --per-request 100 --out DIR/requests-100.jsonl
    hanzo ingest EVENTS --data-dir DIR/data
    hanzo serve --config CONFIG ([customers] model = "DIR/model") --data-dir DIR/data --no-demo-models
    hanzo loadtest --rpc ScoreCustomers --request-file DIR/requests-100.jsonl --rate 500 --duration 20
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hanzo.server.customers.purchases import read_purchases


def build(events: Path, per_request: int, out: Path, horizon_days: int = 90, requests: int = 2_000,
          seed: int = 0) -> int:
    users = np.unique(read_purchases(events)[0])
    rng = np.random.default_rng(seed)
    with open(out, "w") as handle:
        for i in range(requests):
            chosen = rng.choice(len(users), size=min(per_request, len(users)), replace=False)
            handle.write(json.dumps({"request_id": f"load-{i}", "user_ids": users[chosen].tolist(),
                                     "horizon_days": horizon_days}) + "\n")
    return requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=Path, required=True, help="events (.jsonl[.gz]) whose buyers are asked for")
    parser.add_argument("--per-request", type=int, default=1, help="customers in each request")
    parser.add_argument("--horizon-days", type=int, default=90)
    parser.add_argument("--requests", type=int, default=2_000, help="distinct requests the load cycles through")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(f"{build(args.events, args.per_request, args.out, args.horizon_days, args.requests)} requests of "
          f"{args.per_request} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
