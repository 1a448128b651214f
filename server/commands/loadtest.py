"""`hanzo loadtest`: an open-loop load against a running server beside the no-op floor (the
arguments live with the harness, in hanzo.loadtest.cli)."""
from __future__ import annotations

import argparse

from .common import add_command


def register(sub: argparse._SubParsersAction) -> None:
    from hanzo.loadtest.cli import add_arguments

    parser = add_command(sub, "loadtest", "open-loop load against a server, beside the no-op floor")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hanzo.loadtest.cli import run as run_load

    return run_load(args)
