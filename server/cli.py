"""`hanzo`: the command line. Only argument parsing and dispatch live here; each command's
work lives in its own module (imported when the command runs, so `hanzo serve` does not
load the training or load-testing code)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import DEFAULT_PORT, ServerConfig


def _serve(args: argparse.Namespace) -> int:
    import uvloop

    from . import logs
    from .app import serve

    overrides = dict(host=args.host, port=args.port, model_repo=args.model_repo, device=args.device,
                     poll_seconds=args.poll_seconds, log_level=args.log_level, log_format=args.log_format,
                     reuse_port=args.reuse_port or None, demo_models=False if args.no_demo_models else None)
    if args.config:
        config = ServerConfig.from_toml(args.config, **overrides)
    else:
        config = ServerConfig(**{k: v for k, v in overrides.items() if v is not None})
    logs.configure(config.log_level, config.log_format)
    if config.demo_models and not _has_models(config.model_repo):
        from hanzo.training.demo_models import build_demo_repository

        names = build_demo_repository(config.model_repo)
        print(f"hanzo: {config.model_repo} had no models; built the demo models {names}", file=sys.stderr)
    uvloop.run(serve(config))
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
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING ...")
    serve.add_argument("--log-format", choices=["json", "text"])
    serve.set_defaults(func=_serve)

    demo = sub.add_parser("demo-models", help="write the demo models into a model repository")
    demo.add_argument("--model-repo", type=Path, default=Path("model_repo"))
    demo.set_defaults(func=_demo_models)

    from hanzo.loadtest.cli import add_arguments

    load = sub.add_parser("loadtest", help="open-loop load against a server, beside the no-op floor")
    add_arguments(load)
    load.set_defaults(func=_loadtest)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
