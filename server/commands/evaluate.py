"""`hanzo eval SURFACE`: score a running server's surface over gRPC on held-out data, beside
the baselines, with bootstrap intervals."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hanzo.loadtest.reports import write_report

from .common import HelpFormatter, add_command, existing_file, stderr


def _server_and_report(parser: argparse.ArgumentParser, seed_help: str) -> None:
    parser.add_argument("--url", default="127.0.0.1:50051", help="a running server")
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument("--out", type=Path, help="write the JSON report here")


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "eval", "score a surface through a running server over gRPC")
    surfaces = parser.add_subparsers(dest="surface", required=True, metavar="SURFACE")

    recommend = surfaces.add_parser("recommend", help="held-out baskets or clicks, beside tuned baselines",
                                    formatter_class=HelpFormatter)
    _server_and_report(recommend, "bootstrap seed")
    recommend.add_argument("--events", type=Path, required=True, help="the events the served model was trained on")
    recommend.add_argument("--kind", choices=["auto", "basket", "session"], default="auto",
                           help="next basket of a customer, or next click of a session (auto: from the events)")
    recommend.add_argument("--ask-at", choices=["moment", "end"], default="moment",
                           help="ask each case at its own moment, once the events before it are in; or once the "
                                "whole stream is in, the store's clock at the last event (as an email batch would)")
    recommend.set_defaults(func=_recommend)

    search = surfaces.add_parser("search", help="graded NDCG@10 on the dev queries, beside BM25 alone",
                                 formatter_class=HelpFormatter)
    _server_and_report(search, "split and bootstrap seed")
    search.add_argument("--judgments", type=Path, required=True, help="judgments.csv the model was trained on")
    search.add_argument("--catalog", type=Path, required=True, help="catalog.jsonl the judged products come from")
    search.add_argument("--mode", choices=["full", "rerank"], default="full",
                        help="retrieve from the whole catalogue, or re-rank each query's judged products")
    search.set_defaults(func=_search)

    fraud = surfaces.add_parser("fraud", help="the last 20%% of orders scored as they happen, against chargebacks",
                                formatter_class=HelpFormatter)
    _server_and_report(fraud, "bootstrap seed")
    fraud.add_argument("--events", type=Path, required=True, help="the log the served model was trained on")
    fraud.add_argument("--model-repo", type=Path, help="the server's repository: compare with offline scores")
    fraud.add_argument("--merchant-id", default="", help="the merchant the orders are scored for")
    fraud.set_defaults(func=_fraud)


def _done(args: argparse.Namespace, report: dict, summary: str) -> int:
    print(summary)
    if args.out:
        write_report(args.out, report)
    return 0


def _recommend(args: argparse.Namespace) -> int:
    existing_file("--events", args.events)
    from hanzo.training.recommend import eval_server

    report = eval_server.evaluate(args.url, args.events, args.kind, args.seed, log=stderr, ask_at=args.ask_at)
    return _done(args, report, eval_server.main_report(report))


def _search(args: argparse.Namespace) -> int:
    existing_file("--judgments", args.judgments)
    existing_file("--catalog", args.catalog)
    from hanzo.training.search import eval_server

    report = eval_server.evaluate(args.url, args.judgments, args.catalog, args.mode, args.seed, log=stderr)
    return _done(args, report, eval_server.main_report(report))


def _fraud(args: argparse.Namespace) -> int:
    existing_file("--events", args.events)
    from hanzo.training.fraud import eval_server

    report = eval_server.evaluate(args.url, args.events, args.model_repo, args.merchant_id, args.seed, log=stderr)
    shown = ("orders", "charged_back", "pr_auc", "pr_auc_ci95", "decisions", "at_review_rate",
             "offline_max_abs_difference")
    return _done(args, report, json.dumps({k: report[k] for k in shown if k in report}, default=float))
