"""`hanzo keys add | revoke | list --file F`: the credentials a server checks (server/api/keys.py):
API keys, and client-certificate identities that stand for a key under mutual TLS. A running
server reads the file again when it changes: no restart."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import CommandError, add_command


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "keys", "add, revoke or list API keys",
                         "API keys for `hanzo serve --keys-file F`: each bound to scopes (decide, ingest, infer, "
                         "admin) and merchants. The file holds SHA-256 digests; a new key is printed once.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="a new key, printed once")
    add.add_argument("--scopes", required=True, help="comma-separated: decide, ingest, infer, admin")
    add.add_argument("--merchants", default="*", help="comma-separated merchant ids the key acts for (default *)")
    add.add_argument("--name", default="", help="the key's name (default: a random one)")
    add.add_argument("--identity", default="",
                     help="no secret: a client certificate with this common name or subject alternative name "
                          "(mutual TLS, [access] tls_client_ca) stands for the key")
    revoke = actions.add_parser("revoke", help="remove a key by name")
    revoke.add_argument("name", help="the name `hanzo keys add` gave the key")
    actions.add_parser("list", help="names, scopes and merchants (never the keys)")
    for action in (add, revoke, actions.choices["list"]):
        action.add_argument("--file", type=Path, required=True, help="the keys file")
        action.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api.keys import KeyFile

    keys = KeyFile(args.file)
    try:
        if args.action == "add":
            entry, secret = keys.add(_names(args.scopes), _names(args.merchants), args.name, args.identity)
            shown = {"identity": entry.identity} if entry.identity else {"key": secret}
            print(json.dumps({"name": entry.id, **shown, "scopes": list(entry.scopes),
                              "merchants": list(entry.merchants)}, indent=1))
        elif args.action == "revoke":
            keys.revoke(args.name)
            print(json.dumps({"revoked": args.name}))
        else:
            print(json.dumps([{"name": k.id, "scopes": list(k.scopes), "merchants": list(k.merchants),
                               **({"identity": k.identity} if k.identity else {})} for k in keys.entries()], indent=1))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
