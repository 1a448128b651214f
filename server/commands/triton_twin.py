"""`hanzo triton-twin`: Python-backend twins of a repository's models, for a Triton server
without the ONNX Runtime backend (the nvidia-pytriton wheel's)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import CommandError, add_command


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "triton-twin", "Python-backend twins of models for a Triton without the ONNX "
                                             "Runtime backend (the nvidia-pytriton wheel's server)")
    parser.add_argument("models", nargs="*", help="models to twin (default: every model of the repository)")
    parser.add_argument("--model-repo", type=Path, default=Path("model_repo"), help="the repository to read")
    parser.add_argument("--out", type=Path, required=True, help="the twin repository to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hanzo.loadtest.tritonserver import completed_config, write_twin

    if not args.model_repo.is_dir():
        raise CommandError(f"--model-repo {args.model_repo}: no such folder")
    models = args.models or sorted(p.name for p in args.model_repo.iterdir() if (p / "config.pbtxt").exists())
    for model in models:
        if not (args.model_repo / model / "config.pbtxt").exists():
            raise CommandError(f"{model}: no {args.model_repo / model / 'config.pbtxt'}")
        write_twin(args.model_repo, completed_config(args.model_repo, model), args.out)
        print(args.out / model)
    return 0
