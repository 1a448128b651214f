"""`hanzo models status | promote | rollback`: models' production pointers, through a running
server's Admin RPCs (--url; the switch is immediate and audited there) or in a repository on
disk (--model-repo; a server polling it follows at its next poll)."""
from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
from pathlib import Path

from .common import CommandError, add_command


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "models", "models' production versions: status, promote, roll back",
                         "A model with a production pointer serves the version a person promoted; a newer version "
                         "folder is a candidate (loaded, warm, answering only requests that name its version). "
                         "Promote makes a version production in one switch; rollback returns to the version "
                         "promoted before. Give --url to act on a running server (Admin RPCs, admin scope, "
                         "audited) or --model-repo to change the repository on disk.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, summary in (("status", "each model's production, candidate and previous versions"),
                          ("promote", "make a version (default: the candidate) production"),
                          ("rollback", "return to the version promoted before production")):
        action = actions.add_parser(name, help=summary, description=summary)
        action.add_argument("model", nargs="?" if name == "status" else None, default="",
                            help="the model (search moves search_encoder with it)")
        if name == "promote":
            action.add_argument("version", nargs="?", type=int, default=0,
                                help="the version (default: the candidate, the newest version above production)")
        where = action.add_mutually_exclusive_group(required=True)
        where.add_argument("--url", help="a running server's gRPC address")
        where.add_argument("--model-repo", type=Path, help="a model repository on disk")
        action.add_argument("--api-key", default=None,
                            help="an admin key (default: $HANZO_API_KEY)")
        action.add_argument("--tls-ca", type=Path, help="PEM CA that signed the server's certificate (TLS)")
        action.add_argument("--timeout", type=float, default=120.0, help="the call's deadline in seconds")
        action.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = _remote(args) if args.url else _on_disk(args)
    print(json.dumps(report, indent=1))
    return 0


def _remote(args: argparse.Namespace) -> dict:
    import grpc
    from google.protobuf import json_format

    from hanzo.v1 import admin_pb2, admin_pb2_grpc

    if args.tls_ca is not None:
        channel = grpc.secure_channel(args.url, grpc.ssl_channel_credentials(args.tls_ca.read_bytes()))
    else:
        channel = grpc.insecure_channel(args.url)
    key = args.api_key or os.environ.get("HANZO_API_KEY", "")
    metadata = (("authorization", f"Bearer {key}"),) if key else None
    with channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        try:
            if args.action == "status":
                answer = stub.ModelVersions(admin_pb2.ModelVersionsRequest(model_name=args.model),
                                            timeout=args.timeout, metadata=metadata)
            elif args.action == "promote":
                answer = stub.PromoteModel(admin_pb2.PromoteModelRequest(
                    model_name=args.model, model_version=args.version), timeout=args.timeout, metadata=metadata)
            else:
                answer = stub.RollbackModel(admin_pb2.RollbackModelRequest(model_name=args.model),
                                            timeout=args.timeout, metadata=metadata)
        except grpc.RpcError as exc:
            raise CommandError(f"{exc.code().name}: {exc.details()}") from None
    return json_format.MessageToDict(answer, preserving_proto_field_name=True)


def _on_disk(args: argparse.Namespace) -> dict:
    from ..models.config import ConfigError
    from ..models.errors import HanzoError
    from ..models.model_folder import numeric_versions
    from ..models.production import holds_model, promoted, read_pointer, rolled_back, write_pointer
    from ..models.repository import MODEL_NAME
    from ..surfaces.search import COMPANIONS

    root = args.model_repo
    if not root.is_dir():
        raise CommandError(f"--model-repo {root}: not a directory")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and MODEL_NAME.match(p.name))
    if args.model and args.model not in names:
        raise CommandError(f"model {args.model!r} is not in {root} (models: {', '.join(names)})")
    chosen = [args.model] if args.model else names
    by = f"cli ({getpass.getuser()}@{socket.gethostname()})"
    try:
        if args.action != "status":
            group = [*(c for c in COMPANIONS.get(args.model, ()) if c in names), args.model]
            version = args.version
            if args.action == "promote" and not version:  # the model's candidate, one version for the group
                version = _candidate(root / args.model, read_pointer(root / args.model))
            plans = []
            for name in group:
                current = read_pointer(root / name)
                if args.action == "rollback":
                    plans.append((name, rolled_back(current, name, by)))
                    continue
                if not holds_model(root / name / str(version)):
                    raise CommandError(f"model {name!r} has no model file in version folder {version}")
                plans.append((name, promoted(current, version, by)))
            for name, target in plans:  # companions first, the model after (as the server does)
                write_pointer(root / name, target)
            chosen = group
        return {"models": [_disk_status(root / name, read_pointer(root / name), numeric_versions(root / name))
                           for name in chosen]}
    except (ConfigError, HanzoError) as exc:  # a damaged pointer; nothing to roll back to
        raise CommandError(str(exc)) from None


def _candidate(model_dir: Path, current) -> int:
    from ..models.production import newest_above

    newest = newest_above(model_dir, current.version) if current is not None else None
    if newest is None:
        raise CommandError(f"model {model_dir.name!r} has no candidate (no version above production"
                           f"{' ' + str(current.version) if current else ''}); name a version")
    return newest


def _disk_status(model_dir: Path, pointer, versions: list[int]) -> dict:
    from ..models.production import newest_above

    status = {"model_name": model_dir.name, "has_pointer": pointer is not None, "versions_on_disk": versions}
    if pointer is not None:
        status.update(production_version=pointer.version, previous_version=pointer.previous or 0,
                      candidate_version=newest_above(model_dir, pointer.version) or 0, history=list(pointer.history),
                      last_action=pointer.action, changed_by=pointer.by, changed_at=pointer.at)
    return status
