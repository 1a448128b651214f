"""`hanzo serve`: the gRPC server (KServe V2 + the Commerce API). The port answers at once
(health NOT_SERVING) while a first start builds the demo world and the models load; SIGTERM or
SIGINT drains in-flight calls and exits."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from ..app.config import DEFAULT_PORT, ServerConfig
from .common import CommandError, add_command, add_feature_arguments, feature_overrides

log = logging.getLogger("hanzo.serve")


def register(sub: argparse._SubParsersAction) -> None:
    defaults = ServerConfig()
    parser = add_command(sub, "serve", "run the gRPC server (KServe V2 + Commerce API)",
                         "Run the gRPC server. An empty model repository gets a demo marketplace built beside it "
                         "(demo_world/, the data directory); flags override the --config file.")
    parser.add_argument("--config", type=Path, help="TOML file with [server], [features], [recommend] ... tables")
    parser.add_argument("--host", help=f"address to listen on (default {defaults.host}, loopback only)")
    parser.add_argument("--insecure-remote", action="store_true",
                        help="listen on a non-loopback --host although the server has no TLS or credentials yet "
                             "(anyone who reaches the port can ingest, unload models, read metrics)")
    parser.add_argument("--keys-file", type=Path,
                        help="API keys (hanzo keys add --file F): every call then needs one, with the method's scope")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain: TLS on the gRPC and metrics ports")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--tls-client-ca", type=Path, help="PEM CA: mutual TLS, clients show a certificate it signed")
    parser.add_argument("--port", type=int, help=f"gRPC port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--model-repo", type=Path, help=f"Triton-layout model repository (default ./{defaults.model_repo})")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help=f"execution provider (default {defaults.device})")
    parser.add_argument("--poll-seconds", type=float, help="rescan the repository this often (default 0: off)")
    parser.add_argument("--no-demo-models", action="store_true",
                        help="build nothing into an empty repository (no demo models, no demo marketplace)")
    parser.add_argument("--reset-demo", action="store_true",
                        help="remove what a demo built (its models, history and world), then build it again")
    parser.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT: several processes on one port")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes on the port (SO_REUSEPORT; needs --feature-backend redis)")
    parser.add_argument("--drain-delay", type=float,
                        help=f"SIGTERM: seconds of health NOT_SERVING while calls are still served, before new calls "
                             f"are refused (default {defaults.drain_delay_seconds})")
    parser.add_argument("--metrics-port", type=int,
                        help="Prometheus metrics at http://HOST:PORT/metrics (default 0: off; Triton uses 8002)")
    parser.add_argument("--model-control-mode", choices=["explicit", "poll", "none"],
                        help="Triton's: explicit (RepositoryModelLoad/Unload; --load-model at start), poll (rescan "
                             "every --poll-seconds, 15 by default), none (what loads at start serves). Default: poll "
                             "with --poll-seconds, else explicit with every model loaded at start")
    parser.add_argument("--load-model", action="append", metavar="NAME",
                        help="explicit mode: a model loaded at start (repeat it; '*': all)")
    parser.add_argument("--response-cache-bytes", type=int,
                        help="the response cache's budget, for models whose config.pbtxt enables response_cache "
                             "(Triton's --cache-config local,size=N; default 0: none)")
    parser.add_argument("--shared-memory-prefix",
                        help="serve system shared memory for /dev/shm names starting with this (e.g. /hanzo_; / for "
                             "any); default: not served")
    parser.add_argument("--metrics-names", choices=["hanzo", "triton"],
                        help="per-model metrics as hanzo_inference_*_total (default) or Triton's nv_inference_*")
    parser.add_argument("--http-port", type=int,
                        help="the KServe V2 HTTP/REST protocol (tritonclient.http, curl, httpGet probes) on this port "
                             "(default 0: off; Triton uses 8000)")
    parser.add_argument("--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help=f"the least severe log lines written (default {defaults.log_level})")
    parser.add_argument("--log-format", choices=["json", "text"],
                        help=f"the log lines on stderr (default {defaults.log_format})")
    add_feature_arguments(parser)
    parser.set_defaults(func=run)


def server_config(args: argparse.Namespace) -> ServerConfig:
    overrides = dict(host=args.host, insecure_remote=args.insecure_remote or None, port=args.port, model_repo=args.model_repo, device=args.device,
                     poll_seconds=args.poll_seconds, log_level=args.log_level, log_format=args.log_format,
                     reuse_port=args.reuse_port or None, demo_models=False if args.no_demo_models else None,
                     metrics_port=args.metrics_port, http_port=args.http_port, metrics_names=args.metrics_names,
                     model_control_mode=args.model_control_mode, response_cache_bytes=args.response_cache_bytes,
                     shared_memory_prefix=args.shared_memory_prefix, load_models=args.load_model,
                     drain_delay_seconds=args.drain_delay,
                     features=feature_overrides(args),
                     access={name: str(value) if value else None for name, value in (
                         ("keys_file", args.keys_file), ("tls_cert", args.tls_cert), ("tls_key", args.tls_key),
                         ("tls_client_ca", args.tls_client_ca))})
    try:
        if args.config:
            if not args.config.is_file():
                raise CommandError(f"--config {args.config}: no such file")
            config = ServerConfig.from_toml(args.config, **overrides)
            return checked_paths(config, "--catalog" if args.catalog else "[features] catalog")
        features = {k: v for k, v in overrides.pop("features").items() if v is not None}
        access = {k: v for k, v in overrides.pop("access").items() if v is not None}
        config = ServerConfig(features=features, access=access, **{k: v for k, v in overrides.items() if v is not None})
    except (ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from None
    return checked_paths(config, "--catalog" if args.catalog else "[features] catalog")


def checked_paths(config: ServerConfig, catalog_flag: str) -> ServerConfig:
    """The paths the server reads at start, checked now: a missing one named in one line."""
    if config.features.catalog is not None and not Path(config.features.catalog).is_file():
        raise CommandError(f"{catalog_flag} {config.features.catalog}: no such file")
    repo = Path(config.model_repo)
    if not repo.exists() and not repo.resolve().parent.is_dir():
        raise CommandError(f"--model-repo {repo}: neither it nor the folder it would go in exists")
    return config


def run(args: argparse.Namespace) -> int:
    import uvloop

    from ..app import logs
    from ..features.log_frames import LogDamaged
    from ..models.config import ConfigError
    from .first_start import DemoBuildFailed

    config = server_config(args)
    logs.configure(config.log_level, config.log_format)
    from ..app.memory import tune_malloc

    tune_malloc()
    if args.workers > 1:
        from ..app.workers import run_workers

        try:
            return run_workers(sys.argv[1:], config, args.workers)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    try:
        if args.reset_demo:
            from .demo_world import DemoPaths, reset

            for path in reset(DemoPaths.of(config)):
                log.info("removed", extra={"path": str(path)})
        return uvloop.run(_serve(config))
    except (OSError, DemoBuildFailed, LogDamaged, ConfigError) as exc:
        raise CommandError(str(exc)) from None


async def _serve(config: ServerConfig) -> int:
    from ..app.server import HanzoServer
    from .first_start import FirstStart

    first = FirstStart(config)
    first.prepare_config()
    server = HanzoServer(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda sig=sig: (signals.append(sig), stop.set()))
    port = await server.listen()
    background: asyncio.Task | None = None

    def announce() -> None:
        for line in first.try_lines(config.host, port):
            print(line, flush=True)

    clean = False
    try:
        if await _until_stopped(_start(first, server, announce), stop):
            background = loop.create_task(first.improve_search(server.repository))
            await stop.wait()
        else:
            log.warning("stopped before serving; the next start finishes or removes what this one began")
        clean = True
    finally:
        if background is not None:
            background.cancel()
            await asyncio.gather(background, return_exceptions=True)
        # a person's Ctrl-C needs no time for load balancers to move away
        await server.stop(delay=0.0 if signals[:1] == [signal.SIGINT] else None, release_port=not clean)
        first.close()
    _exit(0)


def _exit(code: int) -> None:
    """End the process with its port still open, so the kernel, not gRPC's shutdown, closes it:
    a call that arrives in that last moment then fails UNAVAILABLE, which clients retry (see
    HanzoServer.stop)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _start(first, server, announce) -> None:
    await first.prepare()
    await server.load(announce)


async def _until_stopped(work, stop: asyncio.Event) -> bool:
    """Run `work` unless a stop signal comes first (then cancel it); True if it finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        task.result()  # its error, if any
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False
