"""QuotePrice under load: one request per product the catalogue and the demand model know,
half of them with competitor prices around the product's own (so parity is in play), in a
shuffled order.

    hanzo train pricing --events EVENTS --catalog CATALOG --out DIR/demand.npz
    python -m hanzo.loadtest.pricing_requests --model DIR/demand.npz --catalog CATALOG --out DIR/requests.jsonl
    hanzo ingest EVENTS --data-dir DIR/data --catalog CATALOG
    hanzo serve --config CONFIG ([pricing] model = "DIR/demand.npz") --data-dir DIR/data --no-demo-models
    hanzo loadtest --rpc QuotePrice --request-file DIR/requests.jsonl --rate 500 --duration 20
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hanzo.server.features.formats import read_catalog
from hanzo.server.pricing.demand_model import DemandModel


def build(model_path: Path, catalog: Path, out: Path, seed: int = 0) -> int:
    model = DemandModel.load(model_path)
    prices = {p["product_id"]: p.get("price") for p in read_catalog(catalog)}
    rng = np.random.default_rng(seed)
    known = [p for p in model.product_id if prices.get(p)]
    rng.shuffle(known)
    with open(out, "w") as handle:
        for i, product_id in enumerate(known):
            request = {"request_id": f"load-{i}", "product_id": product_id}
            if i % 2:
                request["competitor_prices"] = [round(prices[product_id] * f, 2) for f in rng.uniform(0.85, 1.2, 3)]
            handle.write(json.dumps(request) + "\n")
    return len(known)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the demand model (hanzo train pricing --out)")
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(f"{build(args.model, args.catalog, args.out)} requests -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
