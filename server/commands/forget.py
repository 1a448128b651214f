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
                         "what remains. No server may be running on the data directory. Prints the receipt as "
                         "JSON and adds a line to the audit log (with the shopper's pseudonym, not their id).")
    parser.add_argument("--config", type=Path, help="the server's TOML file: its [features] table names the store "
                                                    "(data_dir, backend, pseudonym_key_file)")
    parser.add_argument("--data-dir", type=Path, help="the store (default: the config's, else hanzo_data)")
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
    data_dir = config.data_dir
    if not (data_dir / "log").is_dir():
        raise CommandError(f"{data_dir}: no feature store there (no log/)")
    try:
        recover_rebase(data_dir)  # an erasure or rebase cut short by a crash is finished first
        receipt = forget(config, args.merchant, args.user)
    except (ValueError, DirectoryBusy) as exc:
        raise CommandError(str(exc)) from None
    audit = AuditLog(data_dir / "audit.jsonl")
    who = Pseudonyms(store_key(config.pseudonym_key_file, data_dir)).of(scoped(args.merchant, args.user))
    audit.record("hanzo forget (command line)", "forget", "OK", merchant=args.merchant, shopper=who,
                 events_removed=receipt["events_removed"])
    audit.close()
    print(json.dumps(receipt, indent=1))
    return 0


def _store_config(args: argparse.Namespace):
    from ..features.service import FeatureStoreConfig

    if args.config is None:
        return FeatureStoreConfig(data_dir=args.data_dir or Path("hanzo_data"))
    from ..app.config import ServerConfig

    try:
        features = ServerConfig.from_toml(args.config).features
    except (OSError, ValueError) as exc:
        raise CommandError(f"--config {args.config}: {exc}") from None
    if args.data_dir is not None:
        features.data_dir = args.data_dir
    return features
