"""`hanzo train SURFACE`: build a surface's models into the model repository from events
(and, for search, graded judgments)."""
from __future__ import annotations

import argparse
from pathlib import Path

from hanzo.loadtest.reports import write_report

from .common import CommandError, HelpFormatter, add_command, existing_file, positive, stderr


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "train", "build a surface's models into the model repository")
    surfaces = parser.add_subparsers(dest="surface", required=True, metavar="SURFACE")

    recommend = surfaces.add_parser("recommend", help="two-tower model, ANN index and blend from events",
                                    formatter_class=HelpFormatter)
    recommend.add_argument("--events", type=Path, required=True, help="canonical events (JSONL, gzip or not)")
    recommend.add_argument("--catalog", type=Path, help="catalog.jsonl (categories and prices for the item tower)")
    recommend.add_argument("--model-repo", type=Path, default=Path("model_repo"), help="the repository to write into")
    recommend.add_argument("--kind", choices=["auto", "basket", "session"], default="auto",
                           help="next basket of a customer, or next click of a session (auto: from the events)")
    recommend.add_argument("--epochs", type=int, default=8, help="passes over the training cases")
    recommend.add_argument("--seed", type=int, default=0, help="training seed")
    recommend.set_defaults(func=_recommend)

    search = surfaces.add_parser("search", help="the cross-attention re-ranker from graded judgments or search logs",
                                 formatter_class=HelpFormatter)
    search.add_argument("--judgments", type=Path, help="judgments.csv (query_id,query,product_id,relevance); "
                                                       "without it, the search logs in --events are the labels")
    search.add_argument("--catalog", type=Path, required=True, help="catalog.jsonl the judged products come from")
    search.add_argument("--events", type=Path, help="search logs (JSONL): synonyms, and the labels without "
                                                    "--judgments (clicks corrected for position bias, purchases)")
    search.add_argument("--model-repo", type=Path, default=Path("model_repo"), help="the repository to write into")
    search.add_argument("--task", choices=["full", "rerank"], default="full",
                        help="rank BM25's candidates over the catalogue, or re-rank given candidates")
    search.add_argument("--init", type=Path, help="a search model version to fine-tune from")
    search.add_argument("--epochs", type=int, default=6, help="passes over the training queries")
    search.add_argument("--seed", type=int, default=0, help="training seed")
    search.set_defaults(func=_search)

    fraud = surfaces.add_parser("fraud", help="xgboost + MLP ensemble from orders and chargebacks",
                                formatter_class=HelpFormatter)
    fraud.add_argument("--events", type=Path, required=True, help="canonical events (JSONL, gzip or not) with orders "
                                                                  "and chargebacks")
    fraud.add_argument("--model-repo", type=Path, default=Path("model_repo"), help="the repository to write into")
    fraud.add_argument("--seed", type=int, default=0, help="training seed")
    fraud.add_argument("--truth", type=Path, help="a simulation's truth.json: also judge against real fraud")
    fraud.add_argument("--out", type=Path, help="write the JSON report here too")
    fraud.set_defaults(func=_fraud)

    pricing = surfaces.add_parser("pricing", help="the demand model QuotePrice prices from",
                                  formatter_class=HelpFormatter)
    pricing.add_argument("--events", type=Path, required=True, help="canonical events with prices, purchases, views")
    pricing.add_argument("--catalog", type=Path, help="catalog.jsonl: starting prices, costs, categories")
    pricing.add_argument("--out", type=Path, required=True,
                         help="the model ([pricing] model): a file ending .npz, or a folder of versions, where the "
                              "new version arrives as the candidate beside production (`hanzo models promote`)")
    pricing.add_argument("--pooling", type=float, default=5.0,
                         help="how strongly a product's elasticity is pulled toward its category's")
    pricing.add_argument("--half-life-days", type=float, default=21.0,
                         help="a day's weight in the fit halves every N days back (0: all days alike)")
    pricing.add_argument("--log-log", action="store_true",
                         help="the paper's plain log-log curve (no curvature: elasticity the same at every price)")
    pricing.add_argument("--truth", type=Path, help="a simulation's truth.json: compare with true elasticities")
    pricing.add_argument("--report", type=Path, help="write the JSON report here too")
    pricing.set_defaults(func=_pricing)


def _recommend(args: argparse.Namespace) -> int:
    existing_file("--events", args.events)
    existing_file("--catalog", args.catalog)
    positive("--epochs", args.epochs)
    from hanzo.training.recommend.train import train
    from hanzo.training.recommend.two_tower import TrainingConfig

    train(args.events, args.model_repo, args.catalog, args.kind, TrainingConfig(epochs=args.epochs, seed=args.seed))
    return 0


def _search(args: argparse.Namespace) -> int:
    existing_file("--judgments", args.judgments)
    existing_file("--catalog", args.catalog)
    existing_file("--events", args.events)
    positive("--epochs", args.epochs)
    from hanzo.training.search.pipeline import train_search, train_search_clicks
    from hanzo.training.search.train import RerankTraining

    if args.judgments is None:
        if args.events is None:
            raise CommandError("give --judgments, or --events with search logs")
        train_search_clicks(args.events, args.catalog, args.model_repo,
                            RerankTraining(epochs=args.epochs, seed=args.seed), log=stderr)
        return 0
    train_search(args.judgments, args.catalog, args.model_repo, args.events,
                 RerankTraining(epochs=args.epochs, seed=args.seed, task=args.task), log=stderr, init=args.init)
    return 0


def _fraud(args: argparse.Namespace) -> int:
    existing_file("--events", args.events)
    existing_file("--truth", args.truth)
    from hanzo.training.fraud.pipeline import train_fraud

    report = train_fraud(args.events, args.model_repo, args.seed, log=stderr, truth=args.truth)
    if args.out:
        write_report(args.out, report)
    return 0


def _pricing(args: argparse.Namespace) -> int:
    existing_file("--events", args.events)
    existing_file("--catalog", args.catalog)
    existing_file("--truth", args.truth)
    from hanzo.training.pricing.pipeline import train_pricing

    report = train_pricing(args.events, args.out, args.catalog, args.truth, args.pooling,
                           half_life_days=args.half_life_days, curvature=not args.log_log, log=stderr)
    if args.report:
        write_report(args.report, report)
    return 0
