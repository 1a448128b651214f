"""A small simulated marketplace for a fresh `hanzo serve`: its catalogue, its event history in
the feature store (moved in time so that it ends at the moment it is built), and real models
trained on it: the recommender, the fraud ensemble, the pricing demand model and the nightly
inventory plan. The search re-ranker is trained afterwards, beside a server already answering
Search from BM25 (`train_demo_search`), and is kept only if it beats BM25 on its validation
searches. Seeded: the same marketplace every time, whatever the date.

Run as a module by `hanzo serve` in a child process (`build` and `search`), so that the server
answers health checks while it works and an interrupted build leaves only a staging folder."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

from hanzo.server.features.formats import read_records
from hanzo.server.features.service import FeatureService, FeatureStoreConfig

# Fraud four times the usual rate, so a month of a small shop has enough to learn from.
SIZE = {"users": 1000, "products": 300, "days": 30, "fraud_level": 4.0}
SEED = 20261130
DAY_MS = 86_400_000
CATALOG = "catalog.jsonl"
EVENTS = "events.jsonl.gz"
MANIFEST = "demo.json"  # in the demo world: what was built and what to try
DEMO_PRICING_MODEL = "pricing_demand.npz"  # QuotePrice's model when none is configured
DEMO_INVENTORY_PLAN = "inventory_plan.npz"  # PlanInventory's plan when none is configured
DATA_MARKER = "demo-history.json"  # in the data directory: its history is the demo's, movable in time
SEARCH_EPOCHS = 4

Log = Callable[[str], None]


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


def build_demo_marketplace(world: Path, model_repo: Path, data_dir: Path, now_ms: int, log: Log = print,
                           **size: Any) -> dict:
    """Simulate into `world`, train into `model_repo`, load the history into `data_dir` moved to
    end at `now_ms`; writes and returns the manifest (what was built, what to try)."""
    from hanzo.training.recommend.train import train as train_recommend
    from hanzo.training.recommend.two_tower import TrainingConfig
    from hanzo.training.simulator import SimulationConfig, simulate

    size = {**SIZE, **size}
    started = time.monotonic()
    step = lambda what: log(f"demo marketplace: {what} ({time.monotonic() - started:.0f} s)")  # noqa: E731
    sim = simulate(SimulationConfig(seed=SEED, **size), world)
    step(f"{len(sim.events)} events, {size['products']} products, {size['users']} shoppers simulated")
    quiet = lambda message: None  # noqa: E731
    train_recommend(world / EVENTS, model_repo, world / CATALOG, config=TrainingConfig(epochs=3, seed=0), log=quiet)
    step("recommend model trained")
    models = ["recommend"]
    if xgboost_available():
        from hanzo.training.fraud.pipeline import train_fraud

        train_fraud(world / EVENTS, model_repo, seed=0, log=quiet)
        models.append("fraud")
        step("fraud ensemble trained")
    from hanzo.training.pricing.pipeline import train_pricing

    train_pricing(world / EVENTS, world / DEMO_PRICING_MODEL, world / CATALOG, log=quiet)
    step("pricing demand model fitted")
    # The history up to the simulation's end (chargebacks land weeks later, past the store's
    # future cap), in time order, moved so that its last event happens now.
    end = sim.start_ms + size["days"] * DAY_MS
    events = sorted((r for r in read_records(world / EVENTS) if r["timestamp"] < end), key=lambda r: r["timestamp"])
    shift = now_ms - events[-1]["timestamp"]
    events = [{**r, "timestamp": r["timestamp"] + shift} for r in events]
    _plan_inventory(events, world)
    step("inventory plan built")
    _load_history(events, world / CATALOG, data_dir)
    step(f"{len(events)} events in the feature store, the last at the moment of building")
    manifest = {**_try_these(events), "catalog": str((world / CATALOG).resolve()), "events": len(events),
                "models": models, "search": {"state": "pending"}, "built_ms": now_ms,
                "seconds": round(time.monotonic() - started, 1)}
    (world / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _plan_inventory(events: list[dict], world: Path) -> None:
    """The nightly plan for every product at each warehouse, and in all of them ("ALL", what a
    request without a location asks about)."""
    from hanzo.server.inventory.plan import build_plan, with_totals
    from hanzo.server.inventory.sales_from_events import write_sales_table

    table = world / "sales.csv"
    write_sales_table(events, table)
    # a month of history is too short for the statistical models to say anything, and loading
    # them would slow the first start: Hanzo's own models only
    with_totals(build_plan(table, 28, "demo", statistical=False)).save(world / DEMO_INVENTORY_PLAN)


def _load_history(events: list[dict], catalog: Path, data_dir: Path) -> None:
    service = FeatureService(FeatureStoreConfig(data_dir=data_dir, catalog=catalog, fsync="never"))
    service.open()
    try:
        for first in range(0, len(events), 5000):
            service.ingest_blocking(events[first:first + 5000])
    finally:
        service.close()
    (data_dir / DATA_MARKER).write_text(json.dumps({"demo": True, "note": "a simulated history: `hanzo serve` "
                                                    "moves it forward to the present at each start"}))


def _try_these(events: list[dict]) -> dict:
    """A user with purchases in the last week, the last query searched, the last order, a
    product bought and where: what the printed lines suggest to try."""
    user = next(r["user_id"] for r in reversed(events) if r["event_type"] == "purchase" and r.get("user_id"))
    query = next(r["payload"]["query"] for r in reversed(events) if r["event_type"] == "search")
    last = next(r for r in reversed(events) if r["event_type"] == "order")
    fields = ("amount", "currency", "card_id", "device_id", "ip", "email", "shipping_address_id",
              "billing_address_id", "signals")
    order = {"order_id": "demo-order-1", "user_id": last["user_id"], "session_id": last["session_id"],
             **{k: last["payload"][k] for k in fields if k in last["payload"]}}
    bought = next(r["payload"] for r in reversed(events) if r["event_type"] == "purchase")
    location = next((r["payload"].get("location") for r in reversed(events) if r["event_type"] == "order"
                     and r["payload"].get("order_id") == bought.get("order_id")), None) or "ALL"
    return {"user_id": user, "query": query, "order": order, "product_id": bought["product_id"], "location": location}


def train_demo_search(world: Path, model_repo: Path, log: Log = print, epochs: int = SEARCH_EPOCHS) -> dict:
    """The re-ranker from the demo's search logs, written as a version into `model_repo`;
    returns its report, whose `beats_bm25` says whether it ranked the validation searches
    better than BM25's own order (the test searches are reported, never used to choose)."""
    from hanzo.training.search.pipeline import train_search_clicks
    from hanzo.training.search.train import RerankTraining

    report = train_search_clicks(world / EVENTS, world / CATALOG, model_repo, RerankTraining(epochs=epochs),
                                 log=lambda message: None)
    training = report["training"]
    report["beats_bm25"] = training["validation_ndcg10"] > training["validation_bm25_ndcg10"]
    log(f"demo search re-ranker: validation NDCG@10 {training['validation_ndcg10']:.4f} against BM25's "
        f"{training['validation_bm25_ndcg10']:.4f}; test {report['test']['ndcg']:.4f} against "
        f"{report['test']['bm25']:.4f}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanzo.training.demo_marketplace")
    parser.add_argument("step", choices=["build", "search"])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--model-repo", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, help="build: the feature store to fill")
    parser.add_argument("--now-ms", type=int, help="build: when the history ends (default: now)")
    parser.add_argument("--report", type=Path, help="search: write the report here")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=["json", "text"], default="json")
    args = parser.parse_args(argv)
    from hanzo.server.app.logs import configure

    configure(args.log_level, args.log_format)
    logger = logging.getLogger("hanzo.demo")
    if args.step == "build":
        now_ms = args.now_ms if args.now_ms is not None else int(time.time() * 1000)
        build_demo_marketplace(args.world, args.model_repo, args.data_dir, now_ms, log=logger.info)
    else:
        import torch

        torch.set_num_threads(1)  # beside a server that is answering calls
        report = train_demo_search(args.world, args.model_repo, log=logger.info)
        args.report.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
