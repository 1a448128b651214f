"""ScoreFraud under load: a shop's history into a server's store, then its latest orders (the
test split, every one distinct, so no answer comes from the repeat cache) as the requests.

    python -m hanzo.loadtest.fraud_requests --events EVENTS --out DIR
    hanzo ingest DIR/history.jsonl.gz --data-dir DIR/data --sort
    hanzo serve --model-repo REPO --data-dir DIR/data --no-demo-models
    hanzo loadtest --rpc ScoreFraud --request-file DIR/requests.jsonl --rate 500 --duration 20
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from google.protobuf import json_format

from hanzo.server.features.formats import write_records
from hanzo.server.surfaces.fraud_inputs import FraudOrder
from hanzo.training.fraud.eval_server import order_request
from hanzo.training.fraud.pipeline import load_sorted


def build(events: Path, out: Path, test_share: float = 0.2) -> dict:
    records = load_sorted(events)
    orders = [r for r in records if r["event_type"] == "order"]
    cut = orders[int(len(orders) * (1 - test_share))]["timestamp"] if orders else 0
    out.mkdir(parents=True, exist_ok=True)
    history = write_records(out / "history.jsonl.gz", (r for r in records if r["timestamp"] < cut))
    count = 0
    with open(out / "requests.jsonl", "w") as handle:
        for record in orders:
            if record["timestamp"] < cut:
                continue
            request = order_request(FraudOrder.from_event(record), "", f"load-{record['payload']['order_id']}")
            handle.write(json.dumps(json_format.MessageToDict(request)) + "\n")
            count += 1
    return {"history_events": history, "requests": count}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test-share", type=float, default=0.2)
    args = parser.parse_args()
    print(json.dumps(build(args.events, args.out, args.test_share)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
