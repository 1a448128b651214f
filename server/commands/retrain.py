"""`hanzo retrain SURFACE`: a candidate for a surface's model, trained on what the feature
store's event log holds now, written into the model repository beside production.

The version serving now stays production (its production pointer is set first where it had
none); the new version is the candidate, loaded and warm on a running server's next poll or
RepositoryModelLoad, answering only requests that name it until `hanzo models promote`."""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from .common import CommandError, add_command, existing_file, positive, stderr

SURFACES = ("recommend", "search", "fraud", "pricing")  # each repository model has its surface's name


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "retrain", "a surface's candidate model from the feature store's event log",
                         "Train a candidate for recommend, search or fraud on the events the store's log holds "
                         "now (the same training as `hanzo train`, with its time splits and point-in-time "
                         "features), and write it as the model's next version beside production. Production "
                         "does not change: promote the candidate with `hanzo models promote`. Pricing's demand "
                         "model is not a repository model: its versions live in the folder [pricing] model "
                         "names (--pricing-dir).")
    parser.add_argument("surface", choices=SURFACES, help="the surface whose model to retrain")
    parser.add_argument("--data-dir", type=Path, action="append", required=True,
                        help="the store's data directory (repeat for each replica of a Redis-mode store)")
    parser.add_argument("--model-repo", type=Path, default=Path("model_repo"), help="the repository to write into")
    parser.add_argument("--catalog", type=Path, help="catalog.jsonl (recommend: the item tower's categories and "
                                                     "prices; search: required, the products to rank)")
    parser.add_argument("--pricing-dir", type=Path,
                        help="pricing: the folder of demand model versions ([pricing] model; required)")
    parser.add_argument("--epochs", type=int, default=None, help="passes over the training cases "
                                                                 "(default: as `hanzo train`)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    existing_file("--catalog", args.catalog)
    if args.epochs is not None:
        positive("--epochs", args.epochs)
    if args.surface == "search" and args.catalog is None:
        raise CommandError("retrain search needs --catalog: the products its searches rank")
    if args.surface == "pricing" and (args.pricing_dir is None or str(args.pricing_dir).endswith(".npz")):
        raise CommandError("retrain pricing needs --pricing-dir: the folder of demand model versions that "
                           "[pricing] model names (a single .npz file has no candidates)")
    from ..features.log_export import export_events
    from ..models.production import read_pointer

    started = time.monotonic()
    model_dir = args.pricing_dir if args.surface == "pricing" else args.model_repo / args.surface
    with tempfile.TemporaryDirectory(prefix="hanzo-retrain-") as scratch:
        events = Path(scratch) / "events.jsonl.gz"
        try:
            count = export_events(args.data_dir, events)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if count == 0:
            raise CommandError(f"the event log of {', '.join(map(str, args.data_dir))} holds no events to train on")
        stderr(f"retrain {args.surface}: {count} events from the event log")
        version_dir = _train(args, events)
    from ..models.config import ConfigError

    try:
        pointer = read_pointer(model_dir)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps({"surface": args.surface, "model": model_dir.name, "events": count,
                      "candidate_version": int(version_dir.name),
                      "production_version": pointer.version if pointer else None,
                      "seconds": round(time.monotonic() - started, 1),
                      "next": f"hanzo models promote {model_dir.name} {version_dir.name} --url HOST:PORT"}, indent=1))
    return 0


def _train(args: argparse.Namespace, events: Path) -> Path:
    seed, epochs = args.seed, args.epochs
    if args.surface == "recommend":
        from hanzo.training.recommend.train import train
        from hanzo.training.recommend.two_tower import TrainingConfig

        config = TrainingConfig(seed=seed) if epochs is None else TrainingConfig(epochs=epochs, seed=seed)
        return train(events, args.model_repo, args.catalog, config=config, log=stderr)
    if args.surface == "pricing":
        from hanzo.training.pricing.pipeline import train_pricing

        return Path(train_pricing(events, args.pricing_dir, args.catalog, log=stderr)["model"])
    if args.surface == "fraud":
        from hanzo.training.fraud.pipeline import train_fraud

        report = train_fraud(events, args.model_repo, seed, log=stderr)
        return Path(report["version_dir"])
    from hanzo.training.search.pipeline import train_search_clicks
    from hanzo.training.search.train import RerankTraining

    config = RerankTraining(seed=seed) if epochs is None else RerankTraining(epochs=epochs, seed=seed)
    report = train_search_clicks(events, args.catalog, args.model_repo, config, log=stderr)
    return Path(report["version_dir"])
