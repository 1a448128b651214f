"""`hanzo demo-models`: the two small seeded demo models, written into a model repository."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import CommandError, add_command


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "demo-models", "write the demo models into a model repository")
    parser.add_argument("--model-repo", type=Path, default=Path("model_repo"), help="the repository to write into")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hanzo.training.demo_models import build_demo_repository

    try:
        names = build_demo_repository(args.model_repo)
    except OSError as exc:
        raise CommandError(f"--model-repo {args.model_repo}: {exc.strerror or exc}") from None
    for name in names:
        print(f"{args.model_repo / name}")
    return 0
