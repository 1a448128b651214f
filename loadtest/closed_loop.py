"""Recommend judged in a closed loop on the simulator: what shoppers did with the lists a
running server's model showed them, beside the popularity baseline and the oracle (the truth's
own ranking), each against the truth's expected clicks and purchases.

    python -m hanzo.loadtest.closed_loop --out loadtest/reports/closed-loop-recommend.json
        [--users 2000] [--products 600] [--warm-days 30] [--eval-days 14] [--seed 7] [--epochs 3]

Each shop runs the same seeded world (training/simulator/closed_loop.py). For `warm_days` no
list is shown and every event flows to the shop (the server ingests them through IngestEvents);
then the server's recommend model is trained on those days' events (`hanzo train recommend`'s
pipeline, into its empty repository, loaded with RepositoryModelLoad), and for `eval_days` a
share of sessions open with a list of k. Per 1,000 impressions: the clicks and purchases that
happened (a purchase: a product clicked in the list and bought in that session, by any route),
and the truth's expected clicks (examination by position times the chance to click) and
purchases through the click; 95% bootstrap intervals over the lists shown."""
from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hanzo.server.features.formats import write_catalog, write_records
from hanzo.training.metrics import bootstrap_statistic
from hanzo.training.simulator import SimulationConfig
from hanzo.training.simulator.closed_loop import (ClosedLoopSimulation, Impressions, OracleShop, PopularityShop,
                                                  ServerShop)

from .fuzz_server import stop
from .readiness import wait_until_ready
from .reports import write_report
from .targets import free_port

SHOPS = ("popularity", "server", "oracle")


def per_thousand(outcome: Impressions, seed: int) -> dict:
    """The outcome's rates per 1,000 impressions, with bootstrap intervals over the lists."""
    out = {"lists": outcome.lists, "impressions": outcome.impressions, "failed_calls": outcome.failures,
           "versions": outcome.versions}
    sizes = np.full(len(outcome.clicks), outcome.impressions / max(outcome.lists, 1))
    for name in ("clicks", "purchases", "expected_clicks", "expected_purchases"):
        values = np.asarray(getattr(outcome, name), dtype=float)
        low, high = bootstrap_statistic(lambda idx, v=values: 1000 * v[idx].sum() / sizes[idx].sum(), len(values),
                                        seed=seed, resamples=500)
        out[f"{name}_per_1000"] = {"value": round(1000 * values.sum() / max(outcome.impressions, 1), 2),
                                   "ci95": [round(low, 2), round(high, 2)]}
    return out


def serve_repo(workdir: Path, model_repo: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`hanzo serve` without demo models on `model_repo`, a data directory in `workdir` and a
    free loopback port; returns once ready (its log in workdir/serve.log)."""
    port = free_port()
    Path(model_repo).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "hanzo.server.commands", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--no-demo-models", "--model-repo", str(model_repo), "--data-dir", str(workdir / "data"),
           "--drain-delay", "0", *extra]
    with open(workdir / "serve.log", "w") as log:
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    url = f"127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, 300.0, lambda: (workdir / "serve.log").read_text()[-4000:])
    except BaseException:
        stop(process)
        raise
    return process, url


def _serve(workdir: Path, catalog: Path, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    return serve_repo(workdir, workdir / "model_repo", "--catalog", str(catalog), *extra)


def _train_and_load(sim: ClosedLoopSimulation, warm_end_ms: int, workdir: Path, url: str, epochs: int,
                    seed: int) -> None:
    from hanzo.training.recommend.train import train
    from hanzo.training.recommend.two_tower import TrainingConfig

    events = workdir / "warm-events.jsonl.gz"
    write_records(events, sorted((e for e in sim.events if e["timestamp"] <= warm_end_ms),
                                 key=lambda e: (e["timestamp"], e["event_id"])))
    train(events, workdir / "model_repo", workdir / "catalog.jsonl", config=TrainingConfig(epochs=epochs, seed=seed),
          log=lambda message: None)
    with grpc.insecure_channel(url) as channel:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).RepositoryModelLoad(
            service_pb2.RepositoryModelLoadRequest(model_name="recommend"), timeout=300)


def run_shop(name: str, config: SimulationConfig, warm: int, days: int, k: int, epochs: int,
             workdir: Path) -> dict:
    sim = ClosedLoopSimulation(SimulationConfig(**{**asdict(config), "days": warm + days}), k=k)
    warm_end_ms = sim.start_ms + warm * 86_400_000 - 1
    if name != "server":
        popularity = PopularityShop()
        sim.shop = popularity
        sim.run_days(0, warm)
        sim.shop = popularity if name == "popularity" else OracleShop(sim)
        sim.showing = True
        sim.run_days(warm, warm + days)
        return per_thousand(sim.outcome, config.seed)
    workdir.mkdir(parents=True, exist_ok=True)
    write_catalog(workdir / "catalog.jsonl", sim.initial_catalog())
    process, url = _serve(workdir, workdir / "catalog.jsonl")
    shop = ServerShop(url)
    try:
        sim.shop = shop
        sim.run_days(0, warm)
        _train_and_load(sim, warm_end_ms, workdir, url, epochs, config.seed)
        sim.showing = True
        sim.run_days(warm, warm + days)
    finally:
        shop.close()
        stop(process)
    return {**per_thousand(sim.outcome, config.seed), "events_sent": shop.sent, "events_rejected": shop.rejected}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.closed_loop", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=600)
    parser.add_argument("--warm-days", type=int, default=30)
    parser.add_argument("--eval-days", type=int, default=14)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--shops", default=",".join(SHOPS), help="comma-separated: " + ", ".join(SHOPS))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-closed-loop"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = SimulationConfig(seed=args.seed, users=args.users, products=args.products)
    shops = {}
    for name in args.shops.split(","):
        shops[name] = run_shop(name, config, args.warm_days, args.eval_days, args.k, args.epochs,
                               args.workdir / f"{name}-{args.seed}")
        print(f"{name}: {shops[name]['clicks_per_1000']['value']} clicks and "
              f"{shops[name]['purchases_per_1000']['value']} purchases per 1000 impressions", file=sys.stderr)
    report = {"simulation": {**asdict(config), "warm_days": args.warm_days, "eval_days": args.eval_days},
              "k": args.k, "epochs": args.epochs, "shops": shops}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
