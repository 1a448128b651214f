"""`hanzo audit`: the server's audit log of admin actions (who, what, when, result), oldest
first, as a table or JSON lines; filtered by time, credential or result."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import CommandError, add_command


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "audit", "read the audit log of admin actions",
                         "Print the audit log a server writes (repository loads and unloads, Admin calls, keys "
                         "added and revoked, and refused attempts at any of them): by default "
                         "DATA_DIR/audit.jsonl, or [access] audit_log.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", type=Path, help="the feature store's data directory (its audit.jsonl, and its workers')")
    where.add_argument("--file", type=Path, help="the audit log itself ([access] audit_log)")
    parser.add_argument("--since", default="", help="only records at or after this UTC time (ISO 8601 prefix)")
    parser.add_argument("--who", default="", help="only records of this credential name")
    parser.add_argument("--refused", action="store_true", help="only calls that did not succeed")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api.audit import read

    # `hanzo serve --workers N` keeps a data directory per worker, each with its own audit log
    paths = [args.file] if args.file else [args.data_dir / "audit.jsonl",
                                           *sorted(args.data_dir.glob("worker-*/audit.jsonl"))]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        where = args.file or args.data_dir / "audit.jsonl"
        raise CommandError(f"{where}: no audit log there (a server writes it at its first admin action)")
    records = []
    for path in paths:
        worker = {"worker": path.parent.name} if path.parent.name.startswith("worker-") and not args.file else {}
        records.extend({**r, **worker} for r in read(path))
    records.sort(key=lambda r: str(r.get("time", "")))  # stable: one file's order kept within a moment
    for record in records:
        if args.since and str(record.get("time", "")) < args.since:
            continue
        if (args.who and record.get("who") != args.who) or (args.refused and record.get("result") == "OK"):
            continue
        if args.json:
            print(json.dumps(record))
        else:  # a caller's words (a model name) printed escaped: no line of theirs can pass for a record
            rest = " ".join(f"{_shown(k)}={_shown(v)}" for k, v in record.items()
                            if k not in ("time", "who", "what", "result"))
            print(f"{_shown(record.get('time', ''))}  {_shown(record.get('who', ''))}  "
                  f"{_shown(record.get('what', ''))}  {_shown(record.get('result', ''))}  {rest}".rstrip())
    return 0


def _shown(value: object) -> str:
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
