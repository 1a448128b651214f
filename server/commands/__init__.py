"""`hanzo`: the command line. One module per command, each holding its own arguments beside
the code it drives (imported when the command runs, so `hanzo serve` loads neither the training
nor the load-testing code)."""
from __future__ import annotations

import os
import sys

# gRPC's own INFO lines (plain text) would interleave with the JSON log on stderr.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from . import (audit, call, customers, demo_models, evaluate, forecast, forget, ingest, keys, loadtest,  # noqa: E402
               models, rebuild_redis, recommend_batch, retrain, serve, simulate, train, triton_twin, tune)
from . import log as log_command  # noqa: E402
from .common import CommandError, HelpFormatter, Parser  # noqa: E402

COMMANDS = (serve, call, simulate, ingest, train, evaluate, forecast, customers, recommend_batch, demo_models, loadtest,
            tune, triton_twin, log_command, keys, audit, forget, rebuild_redis, models, retrain)


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as package_version

    try:
        return package_version("hanzo")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def build_parser() -> Parser:
    parser = Parser(prog="hanzo", description="Hanzo: an AI-first commerce inference server.",
                    formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"hanzo {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        command = " ".join(c for c in (args.command, getattr(args, "surface", None)) if c)
        print(f"hanzo {command}: unrecognized arguments: {' '.join(unknown)} (see hanzo {command} --help)",
              file=sys.stderr)
        return 2
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a reader that has gone is caught
        return code
    except CommandError as exc:
        print(f"hanzo {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `hanzo call ... | head`: the reader has gone, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
