"""`hanzo forget --merchant M --user U`: erase a shopper from a stopped server's store (the event
log, snapshots, online store, dedup index and fraud network are rebuilt without them) and print
the receipt (server/features/erasure.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import CommandError, add_command


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "forget", "erase a shopper's data on request",
                         "Erase a shopper from a feature store: every event of theirs (their sessions' anonymous "
                         "events, the served logs and the chargebacks of their orders included) leaves the event "
                         "log, and the snapshots, online store, dedup index and fraud network are rebuilt from "
                         "what remains; in Redis mode, Redis is rebuilt from every replica's rewritten log. No "
                         "server may be running on the data directories. Prints the receipt as "
                         "JSON and adds a line to the audit log (with the shopper's pseudonym, not their id).")
    parser.add_argument("--config", type=Path, help="the server's TOML file: its [features] table names the store "
                                                    "(data_dir, backend, pseudonym_key_file)")
    parser.add_argument("--data-dir", type=Path, action="append",
                        help="the store (default: the config's, else hanzo_data); in Redis mode, every replica's "
                             "data directory, each with its own --data-dir (all of them stopped)")
    parser.add_argument("--redis-url", help="a Redis store (the replicas' --redis-url): its tables are rebuilt "
                                            "from the replicas' logs")
    parser.add_argument("--merchant", default="", help="the shopper's merchant (as in merchant_id; default none)")
    parser.add_argument("--user", required=True, help="the shopper's user_id, as the merchant sent it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api.audit import AuditLog
    from ..features.erasure import forget
    from ..features.lock import DirectoryBusy
    from ..features.pseudonyms import Pseudonyms, store_key
    from ..features.rebase import recover_rebase
    from ..features.tenancy import merchant_problem, scoped

    problem = merchant_problem(args.merchant)
    if problem is not None:
        raise CommandError(f"--merchant {args.merchant!r}: {problem}")
    config = _store_config(args)
    data_dirs = args.data_dir or [config.data_dir]
    for data_dir in data_dirs:
        if not (data_dir / "log").is_dir():
            raise CommandError(f"{data_dir}: no feature store there (no log/)")
    if len(data_dirs) > 1 and config.backend != "redis":
        raise CommandError("several --data-dir are the replicas of a Redis store; an embedded store has one")
    try:
        if config.backend == "redis":
            receipt, key = _forget_redis(config, data_dirs, args.merchant, args.user)
        else:
            recover_rebase(config.data_dir)  # an erasure or rebase cut short by a crash is finished first
            receipt = forget(config, args.merchant, args.user)
            key = store_key(config.pseudonym_key_file, config.data_dir)
    except (ValueError, DirectoryBusy) as exc:
        raise CommandError(str(exc)) from None
    who = Pseudonyms(key).of(scoped(args.merchant, args.user))
    for data_dir in data_dirs:
        audit = AuditLog(data_dir / "audit.jsonl")
        audit.record("hanzo forget (command line)", "forget", "OK", merchant=args.merchant, shopper=who,
                     events_removed=receipt["events_removed"])
        audit.close()
    print(json.dumps(receipt, indent=1))
    return 0


def _forget_redis(config, data_dirs: list[Path], merchant: str, user: str) -> tuple[dict, bytes]:
    """The receipt, and the store's pseudonym key (for the audit line)."""
    import redis

    from ..features.pseudonyms import store_key
    from ..features.redis_erasure import forget_redis

    try:
        receipt = forget_redis(config, data_dirs, merchant, user)
        client = redis.Redis.from_url(config.redis_url)
        try:
            return receipt, store_key(config.pseudonym_key_file, data_dirs[0], client)
        finally:
            client.close()
    except redis.exceptions.RedisError as exc:
        raise CommandError(f"Redis at {config.redis_url}: {exc}") from None


def _store_config(args: argparse.Namespace):
    from ..features.service import FeatureStoreConfig

    if args.config is None:
        config = FeatureStoreConfig(data_dir=args.data_dir[0] if args.data_dir else Path("hanzo_data"))
        if args.redis_url:
            config.backend, config.redis_url = "redis", args.redis_url
        return config
    from ..app.config import ServerConfig

    try:
        features = ServerConfig.from_toml(args.config).features
    except (OSError, ValueError) as exc:
        raise CommandError(f"--config {args.config}: {exc}") from None
    if args.data_dir:
        features.data_dir = args.data_dir[0]
    if args.redis_url:
        features.backend, features.redis_url = "redis", args.redis_url
    return features
