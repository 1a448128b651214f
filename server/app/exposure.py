"""Who can reach the server, and how: loopback only without TLS and API keys (said at start);
another address needs both, or --insecure-remote said out loud. The credential check and the
audit log (api/access.py) and TLS (api/tls.py) are built here from the configuration."""
from __future__ import annotations

import ipaddress
import logging
import ssl
from pathlib import Path
from typing import Callable

import grpc

from .config import ServerConfig

log = logging.getLogger("hanzo.server.app.server")

def is_loopback(host: str) -> bool:
    bare = host.strip("[]")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def access(config: ServerConfig):
    """The check in front of every RPC (api/access.Access): credentials when a keys file is
    configured, and the audit log of admin actions always."""
    from ..api.access import Access
    from ..api.audit import AuditLog
    from ..api.keys import KeyFile, KeyStore

    store = None
    if config.access.keys_file:
        try:
            store = KeyStore(KeyFile(Path(config.access.keys_file)))
        except ValueError as exc:  # the start stops in one line naming the file
            raise OSError(f"[access] keys_file: {exc}") from None
        log.info("API keys required", extra={"keys": len(store.keys), "identities": len(store.identities),
                                             "health_open": config.access.health_open,
                                             "reflection_open": config.access.reflection_open})
    if config.access.audit_log:
        audit = AuditLog(Path(config.access.audit_log))
    else:
        audit = AuditLog(Path(config.features.data_dir) / "audit.jsonl", wait_for_directory=True)
    return Access(config.access, store, audit)


def tls_files(config: ServerConfig):
    """The TLS files both ports serve (api.tls.CertificateFiles), or None without TLS."""
    access = config.access
    if not access.tls_cert and not access.tls_key:
        return None
    from ..api.tls import CertificateFiles

    try:
        return CertificateFiles(access.tls_cert, access.tls_key, access.tls_client_ca)
    except ValueError as exc:  # the start stops in one line naming the file
        raise OSError(str(exc)) from None


def checked(config: ServerConfig, files) -> grpc.ServerCredentials | None:
    """The gRPC port's credentials from `files` (None: plaintext), once the address is allowed."""
    from ..api.tls import grpc_credentials

    host = config.host
    secured = files is not None and bool(config.access.keys_file)
    if is_loopback(host):
        log.info("listening on loopback only" + ("" if secured else ": no TLS or credentials are configured"),
                 extra={"host": host, "tls": files is not None, "keys": bool(config.access.keys_file)})
    elif secured:
        log.info("listening with TLS and API keys", extra={"host": host, "mutual_tls": files.client_ca is not None})
    elif not config.insecure_remote:
        raise OSError(f"refusing to listen on {host}: without TLS ([access] tls_cert, tls_key) and API keys ([access] "
                      f"keys_file) anyone who reaches {host} could ingest events, unload models and read the metrics. "
                      f"Configure both, listen on 127.0.0.1 (the default) behind a gateway that authenticates, or "
                      f"pass --insecure-remote ([server] insecure_remote = true) to listen there anyway")
    else:
        log.warning("listening beyond loopback without TLS and API keys (insecure_remote): anyone who reaches the "
                    "port can ingest events, unload models and read the metrics", extra={"host": host})
    return None if files is None else grpc_credentials(files)


def metrics_tls(files) -> ssl.SSLContext | None:
    from ..api.tls import metrics_context

    return None if files is None else metrics_context(files)


def metrics_check(config: ServerConfig, gate) -> Callable[[bytes], bool] | None:
    """With API keys, the metrics port answers a bearer key with the metrics (or admin) scope only
    (unless [access] metrics_open): the page names models, merchants' traffic and the server's
    state. A scraper's key needs no more than `metrics`, which no RPC accepts."""
    if gate.store is None or config.access.metrics_open:
        return None
    store = gate.store

    def allowed(head: bytes) -> bool:
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"authorization":
                scheme, _, secret = value.strip().partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                key = store.lookup(secret.strip().decode("utf-8", "replace"))
                return key is not None and ("metrics" in key.scopes or "admin" in key.scopes)
        return False

    return allowed
