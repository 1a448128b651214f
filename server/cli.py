"""`hanzo`: the command line. Only argument parsing and dispatch live here; each command's
work lives in its own module (imported when the command runs, so `hanzo serve` does not
load the training or load-testing code)."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from .config import DEFAULT_PORT, ServerConfig


def _serve(args: argparse.Namespace) -> int:
    import uvloop

    from . import logs
    from .app import serve

    config = _server_config(args)
    logs.configure(config.log_level, config.log_format)
    if args.workers > 1:
        from .workers import run_workers

        return run_workers(sys.argv[1:], config, args.workers)
    if config.demo_models and not _has_models(config.model_repo):
        _build_demo(config)
    _demo_pricing_model(config)
    uvloop.run(serve(config))
    return 0


def _demo_pricing_model(config: ServerConfig) -> None:
    """With no [pricing] model configured, a demo world beside the repository lends its own."""
    from hanzo.training.demo_marketplace import DEMO_PRICING_MODEL

    demo = Path(config.model_repo).resolve().parent / "demo_world" / DEMO_PRICING_MODEL
    if config.demo_models and not config.pricing.model and demo.exists():
        config.pricing.model = str(demo)


def _build_demo(config: ServerConfig) -> None:
    """An empty repository gets the demo models; with torch installed and no data yet, a
    simulated marketplace too (catalogue, history, trained Recommend and Search models)."""
    from hanzo.training.demo_marketplace import build_demo_marketplace, torch_available
    from hanzo.training.demo_models import build_demo_repository

    names = build_demo_repository(config.model_repo)
    print(f"hanzo: {config.model_repo} had no models; built the demo models {names}", file=sys.stderr)
    data_dir = Path(config.features.data_dir)
    if data_dir.exists() and any(data_dir.iterdir()):
        return  # someone's own data: no simulated history goes into it
    if not torch_available():
        print("hanzo: install torch (pip install -e '.[train]') for a demo marketplace that Recommend and "
              "Search answer from", file=sys.stderr)
        return
    world = Path(config.model_repo).resolve().parent / "demo_world"
    build_demo_marketplace(world, config.model_repo, data_dir, log=lambda m: print(f"hanzo: {m}", file=sys.stderr))
    if config.features.catalog is None:
        config.features.catalog = world / "catalog.jsonl"


def _server_config(args: argparse.Namespace) -> ServerConfig:
    overrides = dict(host=args.host, port=args.port, model_repo=args.model_repo, device=args.device,
                     poll_seconds=args.poll_seconds, log_level=args.log_level, log_format=args.log_format,
                     reuse_port=args.reuse_port or None, demo_models=False if args.no_demo_models else None,
                     metrics_port=args.metrics_port,
                     features=_feature_overrides(args))
    if args.config:
        return ServerConfig.from_toml(args.config, **overrides)
    features = {k: v for k, v in overrides.pop("features").items() if v is not None}
    return ServerConfig(features=features, **{k: v for k, v in overrides.items() if v is not None})


def _feature_overrides(args: argparse.Namespace) -> dict:
    return dict(data_dir=args.data_dir, catalog=args.catalog, fsync=args.fsync, backend=args.feature_backend,
                redis_url=args.redis_url)


def _add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="event log and feature store snapshots (default ./hanzo_data)")
    parser.add_argument("--catalog", type=Path, help="catalog.jsonl loaded into an empty store")
    parser.add_argument("--fsync", choices=["always", "interval", "never"],
                        help="when the log fsyncs: every batch (default), at most every 50 ms, or never")
    parser.add_argument("--feature-backend", choices=["embedded", "redis"],
                        help="where the online features live (default embedded)")
    parser.add_argument("--redis-url", help="for --feature-backend redis (default redis://127.0.0.1:6379/0)")


def _simulate(args: argparse.Namespace) -> int:
    from hanzo.training.simulator import SimulationConfig, simulate

    config = SimulationConfig(seed=args.seed, users=args.users, products=args.products, days=args.days,
                              start=args.start, fraud_level=args.fraud_level, joining_share=args.joining_share,
                              price_experiment_rate=args.price_experiments)
    sim = simulate(config, args.out)
    print(f"{len(sim.events)} events, {len(sim.catalog)} products, {len(sim.shoppers)} shoppers -> {args.out}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from . import ingest_cli

    if not args.file.exists():
        print(f"hanzo ingest: {args.file} does not exist", file=sys.stderr)
        return 2
    if args.url:
        totals = asyncio.run(ingest_cli.over_grpc(args.file, args.url, args.batch, args.concurrency, sort=args.sort))
    else:
        from .features.service import FeatureStoreConfig

        config = FeatureStoreConfig(**{k: v for k, v in _feature_overrides(args).items() if v is not None})
        totals = ingest_cli.bulk(args.file, config, args.batch, sort=args.sort)
    totals.report()
    return 0


def _train(args: argparse.Namespace) -> int:
    from hanzo.training.recommend.train import train
    from hanzo.training.recommend.two_tower import TrainingConfig

    train(args.events, args.model_repo, args.catalog, args.kind, TrainingConfig(epochs=args.epochs, seed=args.seed))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from hanzo.training.recommend import eval_server

    report = eval_server.evaluate(args.url, args.events, args.kind, args.seed,
                                  log=lambda m: print(m, file=sys.stderr))
    print(eval_server.main_report(report))
    if args.out:
        eval_server.write(report, args.out)
    return 0


def _train_search(args: argparse.Namespace) -> int:
    from hanzo.training.search.pipeline import train_search, train_search_clicks
    from hanzo.training.search.train import RerankTraining

    if args.judgments is None:
        if args.events is None:
            print("hanzo train search: give --judgments, or --events with search logs", file=sys.stderr)
            return 2
        train_search_clicks(args.events, args.catalog, args.model_repo, RerankTraining(epochs=args.epochs,
                                                                                       seed=args.seed),
                            log=lambda m: print(m, file=sys.stderr))
        return 0
    train_search(args.judgments, args.catalog, args.model_repo, args.events,
                 RerankTraining(epochs=args.epochs, seed=args.seed, task=args.task),
                 log=lambda m: print(m, file=sys.stderr), init=args.init)
    return 0


def _eval_search(args: argparse.Namespace) -> int:
    from hanzo.training.search import eval_server

    report = eval_server.evaluate(args.url, args.judgments, args.catalog, args.mode, args.seed,
                                  log=lambda m: print(m, file=sys.stderr))
    print(eval_server.main_report(report))
    if args.out:
        eval_server.write(report, args.out)
    return 0


def _train_fraud(args: argparse.Namespace) -> int:
    from hanzo.training.fraud.pipeline import train_fraud

    report = train_fraud(args.events, args.model_repo, args.seed, log=lambda m: print(m, file=sys.stderr),
                         truth=args.truth)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=float))
    return 0


def _train_pricing(args: argparse.Namespace) -> int:
    from hanzo.training.pricing.pipeline import train_pricing

    report = train_pricing(args.events, args.out, args.catalog, args.truth, args.pooling,
                           half_life_days=args.half_life_days, curvature=not args.log_log,
                           log=lambda m: print(m, file=sys.stderr))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))
    return 0


def _eval_fraud(args: argparse.Namespace) -> int:
    from hanzo.training.fraud import eval_server

    report = eval_server.evaluate(args.url, args.events, args.model_repo, args.merchant_id, args.seed,
                                  log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: report[k] for k in ("orders", "charged_back", "pr_auc", "pr_auc_ci95", "decisions")
                      + tuple(k for k in ("at_review_rate", "offline_max_abs_difference") if k in report)},
                     default=float))
    if args.out:
        eval_server.write(report, args.out)
    return 0


def _sales_table(path: Path, beside: Path) -> Path:
    """A sales table as given, or one made from an event log's purchases (written beside the
    output, so the run can be repeated from it)."""
    if not (path.name.endswith(".jsonl") or path.name.endswith(".jsonl.gz")):
        return path
    from .features.formats import read_records
    from .inventory.sales_from_events import write_sales_table

    table = Path(beside).with_suffix(".sales.csv")
    write_sales_table(read_records(path), table)
    return table


def _forecast(args: argparse.Namespace) -> int:
    import csv
    import time

    import numpy as np

    from .inventory.plan import build_plan

    if args.horizon < 1:
        print("hanzo forecast: --horizon must be >= 1", file=sys.stderr)
        return 2
    plan = build_plan(_sales_table(args.sales, args.out), args.horizon, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", "location", "sku", "forecast", "forecast_low", "forecast_high"])
        for row, (location, sku) in enumerate(plan.keys):
            dates = plan.start[row] + np.timedelta64(int(plan.step_days[row]), "D") * np.arange(plan.horizon)
            for d, mean, low, high in zip(np.datetime_as_string(dates, unit="D"), plan.mean[row], plan.low[row],
                                          plan.high[row]):
                writer.writerow([d, location, sku, f"{mean:.3f}", f"{low:.3f}", f"{high:.3f}"])
    print(f"{len(plan.keys)} series, {args.horizon} steps each -> {args.out}", file=sys.stderr)
    return 0


def _plan_inventory(args: argparse.Namespace) -> int:
    import csv
    import time

    from .inventory.plan import build_plan
    from .inventory.policy import daily, reorder_point

    if args.horizon < 1 or args.lead_time < 1:
        print("hanzo plan-inventory: --horizon and --lead-time must be >= 1", file=sys.stderr)
        return 2
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    # a weekly table plans in weeks: enough of them to cover the horizon and the lead time in days
    plan = build_plan(_sales_table(args.sales, args.out), max(args.horizon, args.lead_time), version)
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["location", "product_id", "step_days", "lead_time_demand", "safety_stock", "reorder_point"])
        for row, (location, product_id) in enumerate(plan.keys):
            step = int(plan.step_days[row])
            point = reorder_point(*daily(plan.mean[row], plan.low[row], plan.high[row], step), args.lead_time,
                                  args.service_level)
            writer.writerow([location, product_id, step, f"{point.lead_time_demand:.3f}", f"{point.safety_stock:.3f}",
                             f"{point.reorder_point:.3f}"])
    if args.plan:
        plan.save(args.plan)
    print(f"{len(plan.keys)} series: reorder points -> {args.out}" + (f", plan -> {args.plan}" if args.plan else ""),
          file=sys.stderr)
    return 0


def _recommend_batch(args: argparse.Namespace) -> int:
    from . import recommend_batch

    users = recommend_batch.active_users(args.data_dir, args.active_days)
    counts = asyncio.run(recommend_batch.run(args.url, users, args.out, args.k, args.concurrency))
    print(f"{counts['users']} users ({counts['fallback']} from the popularity fallback) in {counts['seconds']} s "
          f"-> {args.out}")
    return 0


def _has_models(root: Path) -> bool:
    return root.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())


def _demo_models(args: argparse.Namespace) -> int:
    from hanzo.training.demo_models import build_demo_repository

    for name in build_demo_repository(args.model_repo):
        print(f"{args.model_repo / name}")
    return 0


def _loadtest(args: argparse.Namespace) -> int:
    from hanzo.loadtest.cli import run

    return run(args)


def _tune(args: argparse.Namespace) -> int:
    from hanzo.loadtest.tune import format_table, plot, tune

    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x.strip()]

    try:
        report = tune(args.url, args.model_repo, args.model, args.p99_budget_ms, args.rate, ints(args.batch_sizes),
                      ints(args.delays_us), ints(args.instances), args.duration, args.warmup, args.processes,
                      args.max_rate, args.apply, log=lambda m: print(m, file=sys.stderr))
    except (ValueError, FileNotFoundError) as exc:
        print(f"hanzo tune: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    if report["recommended"]:
        verb = "written to" if report["applied"] else "for"
        print(f"\nrecommended ({verb} {args.model_repo / args.model / 'config.pbtxt'}):\n{report['config_pbtxt']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=str))
    if args.plot:
        plot(report, args.plot)
    return 0


def _triton_twin(args: argparse.Namespace) -> int:
    from hanzo.loadtest.tritonserver import completed_config, write_twin

    models = args.models or sorted(p.name for p in args.model_repo.iterdir() if (p / "config.pbtxt").exists())
    for model in models:
        write_twin(args.model_repo, completed_config(args.model_repo, model), args.out)
        print(args.out / model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hanzo", description="Hanzo: an AI-first commerce inference server.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gRPC server (KServe V2 + Commerce API)")
    serve.add_argument("--config", type=Path, help="TOML file with a [server] table; flags override it")
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help=f"gRPC port (default {DEFAULT_PORT}; 0 picks a free one)")
    serve.add_argument("--model-repo", type=Path, help="Triton-layout model repository (default ./model_repo)")
    serve.add_argument("--device", choices=["auto", "cpu", "cuda"], help="execution provider (default auto)")
    serve.add_argument("--poll-seconds", type=float, help="rescan the repository this often (default off)")
    serve.add_argument("--no-demo-models", action="store_true", help="do not build demo models into an empty repo")
    serve.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT: several processes on one port")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes on the port (SO_REUSEPORT; needs --feature-backend redis)")
    serve.add_argument("--metrics-port", type=int,
                       help="Prometheus metrics at http://HOST:PORT/metrics (default 0: off; Triton uses 8002)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING ...")
    serve.add_argument("--log-format", choices=["json", "text"])
    _add_feature_arguments(serve)
    serve.set_defaults(func=_serve)

    sim = sub.add_parser("simulate", help="write a seeded marketplace's events, catalog and truth")
    sim.add_argument("--out", type=Path, required=True, help="folder for events.jsonl.gz, catalog.jsonl, truth.json")
    sim.add_argument("--users", type=int, default=2000)
    sim.add_argument("--products", type=int, default=600)
    sim.add_argument("--days", type=int, default=30)
    sim.add_argument("--start", default="2026-01-05", help="first day (UTC date)")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--fraud-level", type=float, default=1.0,
                     help="scales every fraud pattern's rate (1: about 0.45%% of orders are fraud)")
    sim.add_argument("--joining-share", type=float, default=0.0,
                     help="share of shoppers who first arrive during the run (new customers; default 0)")
    sim.add_argument("--price-experiments", type=float, default=0.02,
                     help="chance a day that a product starts a price test (-20%% to +20%% for 3-10 days)")
    sim.set_defaults(func=_simulate)

    ingest = sub.add_parser("ingest", help="events from a JSONL file (gzip or not) into a feature store")
    ingest.add_argument("file", type=Path)
    ingest.add_argument("--url", help="a running server: batches through IngestEvents")
    ingest.add_argument("--batch", type=int, default=500, help="events a batch (default 500)")
    ingest.add_argument("--concurrency", type=int, default=4, help="batches in flight over gRPC (default 4)")
    ingest.add_argument("--sort", action="store_true",
                        help="read the whole file and send it in event-time order (for unordered history)")
    _add_feature_arguments(ingest)
    ingest.set_defaults(func=_ingest)

    train = sub.add_parser("train", help="build a surface's models into the model repository")
    surfaces = train.add_subparsers(dest="surface", required=True, metavar="SURFACE")
    recommend = surfaces.add_parser("recommend", help="two-tower model, ANN index and blend from events")
    recommend.add_argument("--events", type=Path, required=True, help="canonical events (JSONL, gzip or not)")
    recommend.add_argument("--catalog", type=Path, help="catalog.jsonl (categories and prices for the item tower)")
    recommend.add_argument("--model-repo", type=Path, default=Path("model_repo"))
    recommend.add_argument("--kind", choices=["auto", "basket", "session"], default="auto",
                           help="next basket of a customer, or next click of a session (default: from the events)")
    recommend.add_argument("--epochs", type=int, default=8)
    recommend.add_argument("--seed", type=int, default=0)
    recommend.set_defaults(func=_train)
    search = surfaces.add_parser("search", help="the cross-attention re-ranker from graded judgments")
    search.add_argument("--judgments", type=Path, help="judgments.csv (query_id,query,product_id,relevance); "
                                                       "without it, the search logs in --events are the labels")
    search.add_argument("--catalog", type=Path, required=True, help="catalog.jsonl the judged products come from")
    search.add_argument("--events", type=Path, help="search logs (JSONL): synonyms, and the labels without "
                                                    "--judgments (clicks corrected for position bias, purchases)")
    search.add_argument("--model-repo", type=Path, default=Path("model_repo"))
    search.add_argument("--task", choices=["full", "rerank"], default="full",
                        help="rank BM25's candidates over the catalogue, or re-rank given candidates")
    search.add_argument("--init", type=Path, help="a search model version to fine-tune from")
    search.add_argument("--epochs", type=int, default=6)
    search.add_argument("--seed", type=int, default=0)
    search.set_defaults(func=_train_search)
    fraud = surfaces.add_parser("fraud", help="xgboost + MLP ensemble from orders and chargebacks")
    fraud.add_argument("--events", type=Path, required=True, help="canonical events (JSONL, gzip or not) with orders "
                                                                  "and chargebacks")
    fraud.add_argument("--model-repo", type=Path, default=Path("model_repo"))
    fraud.add_argument("--seed", type=int, default=0)
    fraud.add_argument("--truth", type=Path, help="a simulation's truth.json: also judge against real fraud")
    fraud.add_argument("--out", type=Path, help="write the JSON report here too")
    fraud.set_defaults(func=_train_fraud)
    pricing = surfaces.add_parser("pricing", help="the demand model QuotePrice prices from")
    pricing.add_argument("--events", type=Path, required=True, help="canonical events with prices, purchases, views")
    pricing.add_argument("--catalog", type=Path, help="catalog.jsonl: starting prices, costs, categories")
    pricing.add_argument("--out", type=Path, required=True, help="the model file ([pricing] model)")
    pricing.add_argument("--pooling", type=float, default=5.0,
                         help="how strongly a product's elasticity is pulled toward its category's (default 5)")
    pricing.add_argument("--half-life-days", type=float, default=21.0,
                         help="a day's weight in the fit halves every N days back (default 21; 0: all days alike)")
    pricing.add_argument("--log-log", action="store_true",
                         help="the paper's plain log-log curve (no curvature: elasticity the same at every price)")
    pricing.add_argument("--truth", type=Path, help="a simulation's truth.json: compare with true elasticities")
    pricing.add_argument("--report", type=Path, help="write the JSON report here too")
    pricing.set_defaults(func=_train_pricing)

    evaluate = sub.add_parser("eval", help="score a surface through a running server over gRPC")
    surfaces = evaluate.add_subparsers(dest="surface", required=True, metavar="SURFACE")
    recommend = surfaces.add_parser("recommend", help="held-out baskets or clicks, beside tuned baselines")
    recommend.add_argument("--url", default="127.0.0.1:50051")
    recommend.add_argument("--events", type=Path, required=True, help="the events the served model was trained on")
    recommend.add_argument("--kind", choices=["auto", "basket", "session"], default="auto")
    recommend.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    recommend.add_argument("--out", type=Path, help="write the JSON report here")
    recommend.set_defaults(func=_eval)
    search = surfaces.add_parser("search", help="graded NDCG@10 on the dev queries, beside BM25 alone")
    search.add_argument("--url", default="127.0.0.1:50051")
    search.add_argument("--judgments", type=Path, required=True)
    search.add_argument("--catalog", type=Path, required=True)
    search.add_argument("--mode", choices=["full", "rerank"], default="full",
                        help="retrieve from the whole catalogue, or re-rank each query's judged products")
    search.add_argument("--seed", type=int, default=0, help="split and bootstrap seed")
    search.add_argument("--out", type=Path, help="write the JSON report here")
    search.set_defaults(func=_eval_search)
    fraud = surfaces.add_parser("fraud", help="the last 20%% of orders scored as they happen, against chargebacks")
    fraud.add_argument("--url", default="127.0.0.1:50051")
    fraud.add_argument("--events", type=Path, required=True, help="the log the served model was trained on")
    fraud.add_argument("--model-repo", type=Path, help="the server's repository: compare with offline scores")
    fraud.add_argument("--merchant-id", default="")
    fraud.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    fraud.add_argument("--out", type=Path, help="write the JSON report here")
    fraud.set_defaults(func=_eval_fraud)

    forecast = sub.add_parser("forecast", help="demand forecasts with 10-90%% bounds for every series of a sales table")
    forecast.add_argument("--sales", type=Path, required=True,
                          help="date,location,sku,units,promo,holiday,open (rows with empty units: known future); "
                               "or events (.jsonl[.gz]): daily units from their purchases")
    forecast.add_argument("--horizon", type=int, required=True, help="steps ahead (days or weeks, as the table)")
    forecast.add_argument("--out", type=Path, required=True, help="CSV: date,location,sku,forecast,low,high")
    forecast.set_defaults(func=_forecast)

    plan = sub.add_parser("plan-inventory", help="the nightly job: reorder points for every product and location")
    plan.add_argument("--sales", type=Path, required=True,
                      help="date,location,sku,units,promo,holiday,open; or events (.jsonl[.gz]): their purchases")
    plan.add_argument("--horizon", type=int, default=28, help="days forecast (default 28)")
    plan.add_argument("--lead-time", type=int, default=7, help="days a replenishment takes (default 7)")
    plan.add_argument("--service-level", type=float, default=0.95,
                      help="chance of no stockout while a replenishment is on its way (default 0.95)")
    plan.add_argument("--out", type=Path, required=True, help="CSV of reorder points")
    plan.add_argument("--plan", type=Path, help="also write the plan the server's PlanInventory reads")
    plan.set_defaults(func=_plan_inventory)

    batch = sub.add_parser("recommend-batch", help="the email placement: top-k for every active user, to a file")
    batch.add_argument("--url", default="127.0.0.1:50051")
    batch.add_argument("--data-dir", type=Path, default=Path("hanzo_data"), help="the server's data directory")
    batch.add_argument("--out", type=Path, required=True, help="JSON lines, one user each")
    batch.add_argument("--k", type=int, default=10)
    batch.add_argument("--active-days", type=float, default=30.0)
    batch.add_argument("--concurrency", type=int, default=8)
    batch.set_defaults(func=_recommend_batch)

    demo = sub.add_parser("demo-models", help="write the demo models into a model repository")
    demo.add_argument("--model-repo", type=Path, default=Path("model_repo"))
    demo.set_defaults(func=_demo_models)

    from hanzo.loadtest.cli import add_arguments

    load = sub.add_parser("loadtest", help="open-loop load against a server, beside the no-op floor")
    add_arguments(load)
    load.set_defaults(func=_loadtest)

    tune = sub.add_parser("tune", help="sweep a model's batching and instances under live load; recommend the "
                                       "fastest inside a p99 budget")
    tune.add_argument("model")
    tune.add_argument("--p99-budget-ms", type=float, required=True, help="the server-side p99 to stay inside")
    tune.add_argument("--rate", type=float, default=200.0, help="the load's starting rate; doubled each step")
    tune.add_argument("--url", default="127.0.0.1:50051")
    tune.add_argument("--model-repo", type=Path, default=Path("model_repo"), help="the server's repository")
    tune.add_argument("--batch-sizes", default="1,8,32", help="max_batch_size values (default 1,8,32)")
    tune.add_argument("--delays-us", default="0,200,1000", help="max_queue_delay_microseconds values")
    tune.add_argument("--instances", default="1,2", help="instance counts (default 1,2)")
    tune.add_argument("--duration", type=float, default=4.0, help="measured seconds per step (default 4)")
    tune.add_argument("--warmup", type=float, default=1.0)
    tune.add_argument("--processes", type=int, default=1, help="client processes")
    tune.add_argument("--max-rate", type=float, default=20000.0)
    tune.add_argument("--apply", action="store_true", help="leave the recommended config in config.pbtxt")
    tune.add_argument("--out", type=Path, help="JSON report")
    tune.add_argument("--plot", type=Path, help="PNG: throughput against p99 per configuration")
    tune.set_defaults(func=_tune)

    twin = sub.add_parser("triton-twin", help="Python-backend twins of models for a Triton without the ONNX "
                                              "Runtime backend (the nvidia-pytriton wheel's server)")
    twin.add_argument("models", nargs="*", help="models to twin (default: every model of the repository)")
    twin.add_argument("--model-repo", type=Path, default=Path("model_repo"))
    twin.add_argument("--out", type=Path, required=True, help="the twin repository to write")
    twin.set_defaults(func=_triton_twin)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
