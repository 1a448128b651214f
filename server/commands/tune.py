"""`hanzo tune MODEL`: sweep a model's batching and instances under live load and recommend the
fastest configuration inside a p99 budget."""
from __future__ import annotations

import argparse
from pathlib import Path

from hanzo.loadtest.reports import write_report

from .common import CommandError, add_command, positive, stderr


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "tune", "sweep a model's batching and instances under live load; recommend the "
                                      "fastest inside a p99 budget")
    parser.add_argument("model", help="the model to tune (a folder of --model-repo)")
    parser.add_argument("--p99-budget-ms", type=float, required=True, help="the server-side p99 to stay inside")
    parser.add_argument("--rate", type=float, default=200.0, help="the load's starting rate; doubled each step")
    parser.add_argument("--url", default="127.0.0.1:50051", help="a running server")
    parser.add_argument("--model-repo", type=Path, default=Path("model_repo"), help="the server's repository")
    parser.add_argument("--batch-sizes", default="1,8,32", help="max_batch_size values")
    parser.add_argument("--delays-us", default="0,200,1000", help="max_queue_delay_microseconds values")
    parser.add_argument("--instances", default="1,2", help="instance counts")
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each measurement")
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument("--max-rate", type=float, default=20000.0, help="the ramp stops at this rate")
    parser.add_argument("--apply", action="store_true", help="leave the recommended config in config.pbtxt")
    parser.add_argument("--out", type=Path, help="JSON report")
    parser.add_argument("--plot", type=Path, help="PNG: throughput against p99 per configuration")
    parser.set_defaults(func=run)


def _ints(flag: str, text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CommandError(f"{flag} takes whole numbers separated by commas, not {text!r}") from None
    if not values:
        raise CommandError(f"{flag} names no value")
    return values


def run(args: argparse.Namespace) -> int:
    from hanzo.loadtest.tune import format_table, plot, tune

    if not (args.model_repo / args.model / "config.pbtxt").is_file():
        raise CommandError(f"{args.model}: no {args.model_repo / args.model / 'config.pbtxt'} (give the server's "
                           f"repository with --model-repo)")
    positive("--p99-budget-ms", args.p99_budget_ms)
    positive("--rate", args.rate)
    grid = (_ints("--batch-sizes", args.batch_sizes), _ints("--delays-us", args.delays_us),
            _ints("--instances", args.instances))
    try:
        report = tune(args.url, args.model_repo, args.model, args.p99_budget_ms, args.rate, *grid, args.duration,
                      args.warmup, args.processes, args.max_rate, args.apply, log=stderr)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    print(format_table(report))
    if report["recommended"]:
        verb = "written to" if report["applied"] else "for"
        print(f"\nrecommended ({verb} {args.model_repo / args.model / 'config.pbtxt'}):\n{report['config_pbtxt']}")
    if args.out:
        write_report(args.out, report)
    if args.plot:
        plot(report, args.plot)
    return 0
