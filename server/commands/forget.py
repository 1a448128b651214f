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
    parser.add_argument("--data-dir", type=Path, default=Path("hanzo_data"), help="the store (default hanzo_data)")
    parser.add_argument("--merchant", default="", help="the shopper's merchant (as in merchant_id; default none)")
    parser.add_argument("--user", required=True, help="the shopper's user_id, as the merchant sent it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api.audit import AuditLog
    from ..features.erasure import forget
    from ..features.lock import DirectoryBusy
    from ..features.pseudonyms import Pseudonyms, store_key
    from ..features.service import FeatureStoreConfig
    from ..features.tenancy import merchant_problem, scoped

    problem = merchant_problem(args.merchant)
    if problem is not None:
        raise CommandError(f"--merchant {args.merchant!r}: {problem}")
    if not (args.data_dir / "log").is_dir():
        raise CommandError(f"{args.data_dir}: no feature store there (no log/)")
    try:
        receipt = forget(FeatureStoreConfig(data_dir=args.data_dir), args.merchant, args.user)
    except (ValueError, DirectoryBusy) as exc:
        raise CommandError(str(exc)) from None
    audit = AuditLog(args.data_dir / "audit.jsonl")
    who = Pseudonyms(store_key("", args.data_dir)).of(scoped(args.merchant, args.user))
    audit.record("hanzo forget (command line)", "forget", "OK", merchant=args.merchant, shopper=who,
                 events_removed=receipt["events_removed"])
    audit.close()
    print(json.dumps(receipt, indent=1))
    return 0
