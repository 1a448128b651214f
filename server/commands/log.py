"""`hanzo log verify DATA_DIR` and `hanzo log repair DATA_DIR`: an event log's damage, found and
dealt with explicitly (a server refuses to start on a damaged log and names these commands)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import CommandError, add_command


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "log", "check or repair a feature store's event log",
                         "Check a feature store's event log (verify: changes nothing; exit 1 on damage) or repair "
                         "it (repair: damaged segments copied to log/quarantine/, rewritten with every frame "
                         "that checks out, the lost sequence ranges recorded in log/gaps.json). No server may "
                         "be running on the directory while it is repaired.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, summary in (("verify", "report segments, records and damage; change nothing"),
                          ("repair", "keep every frame that checks out, quarantine the rest, record the loss")):
        action = actions.add_parser(name, help=summary, description=summary)
        action.add_argument("data_dir", type=Path, help="the store's data directory (or its log directory)")
        action.add_argument("--segments", action="store_true", help="verify: one entry per segment too")
        action.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..features.lock import DirectoryBusy
    from ..features.log_repair import log_directory, repair, verify

    try:
        directory = log_directory(args.data_dir)
        if args.action == "verify":
            report = verify(directory)
            print(json.dumps(report.to_dict() if args.segments else report.summary(), indent=1))
            return 1 if report.damaged else 0
        print(json.dumps(repair(args.data_dir), indent=1))
        return 0
    except (FileNotFoundError, DirectoryBusy) as exc:
        raise CommandError(str(exc)) from None
