"""`hanzo simulate`: a seeded marketplace's events, catalogue and truth, written to a folder."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_command, positive


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "simulate", "write a seeded marketplace's events, catalog and truth")
    parser.add_argument("--out", type=Path, required=True, help="folder for events.jsonl.gz, catalog.jsonl, truth.json")
    parser.add_argument("--users", type=int, default=2000, help="shoppers")
    parser.add_argument("--products", type=int, default=600, help="products in the catalogue")
    parser.add_argument("--days", type=int, default=30, help="days of history")
    parser.add_argument("--start", default="2026-01-05", help="first day (UTC date)")
    parser.add_argument("--seed", type=int, default=7, help="the simulation's seed")
    parser.add_argument("--fraud-level", type=float, default=1.0,
                        help="scales every fraud pattern's rate (1: about 0.45%% of orders are fraud)")
    parser.add_argument("--joining-share", type=float, default=0.0,
                        help="share of shoppers who first arrive during the run (new customers)")
    parser.add_argument("--price-experiments", type=float, default=0.02,
                        help="chance a day that a product starts a price test (-20%% to +20%% for 3-10 days)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hanzo.training.simulator import SimulationConfig, simulate

    for flag in ("users", "products", "days"):
        positive(f"--{flag}", getattr(args, flag))
    config = SimulationConfig(seed=args.seed, users=args.users, products=args.products, days=args.days,
                              start=args.start, fraud_level=args.fraud_level, joining_share=args.joining_share,
                              price_experiment_rate=args.price_experiments)
    sim = simulate(config, args.out)
    print(f"{len(sim.events)} events, {len(sim.catalog)} products, {len(sim.shoppers)} shoppers -> {args.out}")
    return 0
