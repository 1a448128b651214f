"""A small simulated marketplace for a fresh `hanzo serve`: its catalogue, its event history
in the feature store, and real models trained on it (the recommender, the search re-ranker
from its search logs, the fraud ensemble from its orders and chargebacks, the pricing demand
model), so Recommend, Search, ScoreFraud and QuotePrice answer at once. Seconds to build, seeded."""
from __future__ import annotations

import json
import time
from pathlib import Path

from hanzo.server.features.formats import read_records
from hanzo.server.features.service import FeatureService, FeatureStoreConfig

# Fraud four times the usual rate, so a month of a small shop has enough to learn from.
SIZE = {"users": 1000, "products": 300, "days": 30, "fraud_level": 4.0}
SEED = 20261130
DEMO_PRICING_MODEL = "pricing_demand.npz"  # in the demo world: QuotePrice's model when none is configured


def xgboost_available() -> bool:
    try:
        import onnxmltools  # noqa: F401
        import xgboost  # noqa: F401
    except ImportError:
        return False
    return True


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def build_demo_marketplace(world: Path, model_repo: Path, data_dir: Path, log=print, **size) -> dict:
    """Simulate into `world`, train into `model_repo`, load the history into `data_dir`;
    returns what a caller needs to try it (the catalogue's path, a user, a query)."""
    from hanzo.training.recommend.train import train as train_recommend
    from hanzo.training.recommend.two_tower import TrainingConfig
    from hanzo.training.search.pipeline import train_search_clicks
    from hanzo.training.search.train import RerankTraining
    from hanzo.training.simulator import SimulationConfig, simulate

    size = {**SIZE, **size}
    started = time.monotonic()
    sim = simulate(SimulationConfig(seed=SEED, **size), world)
    end = sim.start_ms + size["days"] * 86_400_000
    log(f"demo marketplace: {len(sim.events)} events, {size['products']} products, {size['users']} shoppers "
        f"({time.monotonic() - started:.0f} s)")
    quiet = lambda message: None  # noqa: E731
    train_recommend(world / "events.jsonl.gz", model_repo, world / "catalog.jsonl",
                    config=TrainingConfig(epochs=3, seed=0), log=quiet)
    log(f"demo marketplace: recommend model trained ({time.monotonic() - started:.0f} s)")
    train_search_clicks(world / "events.jsonl.gz", world / "catalog.jsonl", model_repo, RerankTraining(epochs=2),
                        log=quiet)
    log(f"demo marketplace: search model trained from its search logs ({time.monotonic() - started:.0f} s)")
    if xgboost_available():
        from hanzo.training.fraud.pipeline import train_fraud

        train_fraud(world / "events.jsonl.gz", model_repo, seed=0, log=quiet)
        log(f"demo marketplace: fraud ensemble trained ({time.monotonic() - started:.0f} s)")
    from hanzo.training.pricing.pipeline import train_pricing

    train_pricing(world / "events.jsonl.gz", world / DEMO_PRICING_MODEL, world / "catalog.jsonl", log=quiet)
    log(f"demo marketplace: pricing demand model fitted ({time.monotonic() - started:.0f} s)")
    # The history up to the simulation's end (chargebacks land weeks later, past the store's
    # future cap), in time order, as the server would have received it.
    events = sorted((r for r in read_records(world / "events.jsonl.gz") if r["timestamp"] < end),
                    key=lambda r: r["timestamp"])
    service = FeatureService(FeatureStoreConfig(data_dir=data_dir, catalog=world / "catalog.jsonl",
                                                fsync="never", max_future_seconds=10 ** 10))
    service.open()
    try:
        for first in range(0, len(events), 5000):
            service.ingest_blocking(events[first:first + 5000])
    finally:
        service.close()
    user = next(r["user_id"] for r in reversed(events) if r["event_type"] == "purchase" and r.get("user_id"))
    query = next(r["payload"]["query"] for r in reversed(events) if r["event_type"] == "search")
    last = next(r for r in reversed(events) if r["event_type"] == "order")
    fields = ("amount", "currency", "card_id", "device_id", "ip", "email", "shipping_address_id",
              "billing_address_id", "signals")
    order = {"order_id": "demo-order-1", "user_id": last["user_id"], "session_id": last["session_id"],
             **{k: last["payload"][k] for k in fields if k in last["payload"]}}
    product = next(r["payload"]["product_id"] for r in reversed(events) if r["event_type"] == "purchase")
    summary = {"catalog": str(world / "catalog.jsonl"), "events": len(events), "user_id": user, "query": query,
               "order": order, "product_id": product, "seconds": round(time.monotonic() - started, 1)}
    (world / "demo.json").write_text(json.dumps(summary, indent=1))
    log(f"demo marketplace: {len(events)} events in the feature store ({summary['seconds']} s); try "
        f"Recommend for user_id {user!r}, Search for {query!r}, QuotePrice for {product!r}")
    return summary
