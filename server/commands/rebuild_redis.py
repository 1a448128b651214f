"""`hanzo rebuild-redis`: a Redis store's tables made again from every replica's event log, for
a Redis whose tables another version of the feature definitions wrote (a replica refuses to
open on them: server/features/redis_layout.py). No server may be running on the data
directories."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import CommandError, add_command


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "rebuild-redis", "make a Redis store's tables again from the replicas' event logs")
    parser.add_argument("--config", type=Path, help="the server's TOML file: its [features] table names the store")
    parser.add_argument("--data-dir", type=Path, action="append",
                        help="every replica's data directory, each with its own --data-dir (all of them stopped)")
    parser.add_argument("--redis-url", help="the Redis store (the replicas' --redis-url)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..features.lock import DirectoryBusy
    from ..features.redis_erasure import rebuild_redis
    from .forget import _store_config

    config = _store_config(args)
    if config.backend != "redis":
        raise CommandError("this store is not in Redis (give --redis-url, or a --config whose [features] backend is "
                           "redis)")
    data_dirs = args.data_dir or [config.data_dir]
    for data_dir in data_dirs:
        if not (data_dir / "log").is_dir():
            raise CommandError(f"{data_dir}: no feature store there (no log/)")
    started = time.monotonic()
    try:
        replayed = rebuild_redis(config, data_dirs)
    except (ValueError, DirectoryBusy) as exc:
        raise CommandError(str(exc)) from None
    print(f"{replayed} events of {len(data_dirs)} replica(s) replayed into {config.redis_url} in "
          f"{time.monotonic() - started:.1f} s")
    return 0
