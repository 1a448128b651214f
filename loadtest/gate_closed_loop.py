"""The promotion gate on the closed-loop simulator: a running server with an experiment and its
gate on, shoppers who click and buy what its arms show them, and a candidate the gate must
promote (a better model) or never promote (a broken one).

    python -m hanzo.loadtest.gate_closed_loop --scenario better --out loadtest/reports/gate-better.json
    python -m hanzo.loadtest.gate_closed_loop --scenario broken --out loadtest/reports/gate-broken.json
    python -m hanzo.loadtest.gate_closed_loop --scenario degrade --days 40 --out loadtest/reports/gate-degrade.json
        [--users 2000] [--products 600] [--warm-days 30] [--days 21] [--seed 7] [--epochs 3]

For `warm_days` every event reaches the server (IngestEvents) and no list is shown. Then:
- better: production is a model trained on the first `weak_days` days only; the candidate is
  trained on all warm days (`hanzo train recommend`'s pipeline, written as the candidate);
- broken: production is trained on all warm days; the candidate is the same model with its
  item embeddings shuffled among the products (every product gets another's vector).
- degrade: from `fad_day` a tenth of the products appeals more to everyone (a fad); production
  is trained on the days before it, the candidate on all warm days, fad included. Once the gate
  has promoted the candidate, the fad ends and its products fall out of fashion (they appeal
  `backlash` less than before the fad), and the gate, watching the new
  production against the version it replaced, should roll it back: the days and lists that
  took are reported.
The server runs `[experiment] candidate_share = 0.5, gate = true` (clicks per list, alpha 0.05,
`min_shoppers` per arm, looking every second of wall time), and three sessions in five open
with a list of k for `days` simulated days, or until a day after the gate acted. Reported: the
gate's actions with the simulated day, lists and impressions at each, and per model version
the clicks per list shown and the truth's expected clicks per list (the simulator's appeal and
position bias) with 95% bootstrap intervals, so the gate's verdict is judged by the truth."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hanzo.server.features.formats import write_catalog, write_records
from hanzo.training.metrics import bootstrap_statistic
from hanzo.training.simulator import SimulationConfig
from hanzo.training.simulator.closed_loop import ClosedLoopSimulation, ServerShop
from hanzo.v1 import admin_pb2, admin_pb2_grpc

from .closed_loop import _serve
from .fuzz_server import stop
from .reports import write_report

DAY_MS = 86_400_000


def _train(sim: ClosedLoopSimulation, until_ms: int, workdir: Path, epochs: int, seed: int) -> Path:
    from hanzo.training.recommend.train import train
    from hanzo.training.recommend.two_tower import TrainingConfig

    events = workdir / f"events-{until_ms}.jsonl.gz"
    write_records(events, sorted((e for e in sim.events if e["timestamp"] <= until_ms),
                                 key=lambda e: (e["timestamp"], e["event_id"])))
    return train(events, workdir / "model_repo", workdir / "catalog.jsonl",
                 config=TrainingConfig(epochs=epochs, seed=seed), log=lambda message: None)


def shuffled_copy(version_dir: Path, seed: int) -> Path:
    """The next version: the same model with its item embeddings given to other products."""
    target = version_dir.parent / str(int(version_dir.name) + 1)
    staging = version_dir.parent / f".{target.name}-shuffling"
    shutil.copytree(version_dir, staging)
    ids = json.loads((staging / "items.json").read_text())
    order = np.random.default_rng(seed).permutation(len(ids))
    (staging / "items.json").write_text(json.dumps([ids[i] for i in order]))
    staging.rename(target)
    return target


def _load(url: str) -> None:
    with grpc.insecure_channel(url) as channel:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).RepositoryModelLoad(
            service_pb2.RepositoryModelLoadRequest(model_name="recommend"), timeout=300)


def _gate(url: str) -> dict:
    with grpc.insecure_channel(url) as channel:
        report = admin_pb2_grpc.AdminStub(channel).ModelVersions(
            admin_pb2.ModelVersionsRequest(model_name="recommend"), timeout=30)
    status = report.models[0]
    return {"production": status.production_version, "candidate": status.candidate_version,
            "gate": json.loads(status.gate_json) if status.gate_json else None}


def per_version(sim: ClosedLoopSimulation, first: int, last: int, seed: int) -> dict:
    """Lists [first, last) by the version that answered: clicks and the truth's expected clicks
    per list, with 95% bootstrap intervals over the lists."""
    out = sim.outcome
    versions = np.array(out.list_versions[first:last])
    table = {}
    for version in sorted(set(versions.tolist())):
        mask = versions == version
        row = {"lists": int(mask.sum())}
        for name in ("clicks", "expected_clicks", "purchases"):
            values = np.asarray(getattr(out, name)[first:last], float)[mask]
            low, high = bootstrap_statistic(lambda idx, v=values: float(v[idx].mean()), len(values), seed=seed,
                                            resamples=500)
            row[f"{name}_per_list"] = {"value": round(float(values.mean()), 4), "ci95": [round(low, 4), round(high, 4)]}
        table[version] = row
    return table


def run(args: argparse.Namespace) -> dict:
    config = SimulationConfig(seed=args.seed, users=args.users, products=args.products,
                              fad_from_day=args.fad_day if args.scenario == "degrade" else -1)
    sim = ClosedLoopSimulation(SimulationConfig(**{**asdict(config), "days": args.warm_days + args.days}), k=args.k)
    workdir = args.workdir / f"{args.scenario}-{args.seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    write_catalog(workdir / "catalog.jsonl", sim.initial_catalog())
    (workdir / "gate.toml").write_text(
        f"[experiment]\ncandidate_share = 0.5\ngate = true\ngate_every_s = 1.0\nmin_shoppers = {args.min_shoppers}\n")
    process, url = _serve(workdir, workdir / "catalog.jsonl", ("--config", str(workdir / "gate.toml")))
    shop = ServerShop(url)
    days, acted_day = [], None
    try:
        sim.shop = shop
        sim.run_days(0, args.warm_days)
        warm_end = sim.start_ms + args.warm_days * DAY_MS - 1
        if args.scenario == "better":
            _train(sim, sim.start_ms + args.weak_days * DAY_MS - 1, workdir, args.epochs, args.seed)
            _train(sim, warm_end, workdir, args.epochs, args.seed)
        elif args.scenario == "degrade":  # production from before the fad, the candidate from during it
            _train(sim, sim.start_ms + args.fad_day * DAY_MS - 1, workdir, args.epochs, args.seed)
            _train(sim, warm_end, workdir, args.epochs, args.seed)
        else:
            shuffled_copy(_train(sim, warm_end, workdir, args.epochs, args.seed), args.seed)
        _load(url)
        sim.showing = True
        shift_day = None
        for day in range(args.warm_days, args.warm_days + args.days):
            sim.run_days(day, day + 1)
            status = _gate(url)
            days.append({"day": day - args.warm_days + 1, "lists": sim.outcome.lists,
                         "impressions": sim.outcome.impressions, "fad": sim.fad_items is not None, **status})
            print(f"day {days[-1]['day']}: {status['gate'] and status['gate']['last']}", file=sys.stderr)
            actions = (status["gate"] or {}).get("actions") or []
            if args.scenario == "degrade":
                if shift_day is None and actions:  # promoted: the fad ends, its products out of fashion
                    sim.end_fad(backlash=args.backlash)
                    shift_day = day - args.warm_days + 1
                if any(a["action"] == "rollback" for a in actions):
                    break
                continue
            if actions and acted_day is None:
                acted_day = day
            if acted_day is not None and day > acted_day:
                break
    finally:
        shop.close()
        stop(process)
    first_action = next((d for d in days if (d["gate"] or {}).get("actions")), None)
    rollback = next((d for d in days if any(a["action"] == "rollback" for a in (d["gate"] or {}).get("actions") or [])),
                    None)
    return {"scenario": args.scenario, "simulation": {**asdict(config), "warm_days": args.warm_days,
                                                      "days_run": len(days)},
            "k": args.k, "epochs": args.epochs, "weak_days": args.weak_days, "min_shoppers": args.min_shoppers,
            "first_action": first_action and {
                "day": first_action["day"], "lists_by_then": first_action["lists"],
                "impressions_by_then": first_action["impressions"], **first_action["gate"]["actions"][0]},
            "per_version": per_version(sim, 0, sim.outcome.lists, args.seed),
            **({"fad_day": args.fad_day, "backlash": args.backlash, "shift_day": shift_day if args.scenario == "degrade" else None,
                "rollback": rollback and {"day": rollback["day"], "lists_by_then": rollback["lists"],
                                          "days_after_the_shift": rollback["day"] - shift_day if shift_day else None,
                                          **rollback["gate"]["actions"][-1]}}
               if args.scenario == "degrade" else {}),
            "days": days, "failed_calls": sim.outcome.failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.gate_closed_loop",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=("better", "broken", "degrade"), required=True)
    parser.add_argument("--fad-day", type=int, default=15, help="degrade: the day the fad begins")
    parser.add_argument("--backlash", type=float, default=1.5,
                        help="degrade: how much less the fad's products appeal after it than before it")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=600)
    parser.add_argument("--warm-days", type=int, default=30)
    parser.add_argument("--weak-days", type=int, default=3, help="better: production's training days")
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-shoppers", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-gate-loop"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    write_report(args.out, run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
