"""Who may call what: API keys a gateway holds, each bound to scopes and to the merchants it acts
for, checked before any RPC runs (a gRPC server interceptor, so health, reflection and Admin
are covered as well as the edge-wrapped services).

Scopes: `decide` (the Commerce decisions and GetFeatures), `ingest` (IngestEvents), `infer`
(KServe inference and metadata), `admin` (repository load / unload and index, Admin). Health
(gRPC health, ServerLive, ServerReady) and reflection are open or closed by configuration.

Keys live in a JSON file (`hanzo keys add | revoke | list` writes it) as SHA-256 digests, never
the keys themselves; the server reads the file again when it changes, so keys are added and
revoked without a restart. A file that stops parsing keeps the keys last read, and says so.
The merchants a key names are kept for tenancy to enforce; `*` stands for any merchant."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

log = logging.getLogger(__name__)

SCOPES = ("decide", "ingest", "infer", "admin")
_HEALTH = {"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
           "/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady"}


@dataclass
class AccessConfig:
    # A JSON file of API keys (`hanzo keys add --file F`); empty: no keys, no check (and the
    # server then listens on loopback only).
    keys_file: str = ""
    health_open: bool = True  # gRPC health, ServerLive and ServerReady answer without a key
    reflection_open: bool = False  # gRPC reflection answers without a key
    # TLS on the gRPC and metrics ports (PEM files, read again when they change); with
    # tls_client_ca, mutual TLS: clients must show a certificate that CA signed.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""


@dataclass(frozen=True)
class ApiKey:
    id: str
    sha256: str
    scopes: tuple[str, ...]
    merchants: tuple[str, ...] = ("*",)


def scope_of(method: str) -> str:
    """The scope a full gRPC method name needs ("health" and "reflection" are configurable)."""
    if method in _HEALTH:
        return "health"
    service, _, name = method.strip("/").partition("/")
    if service.startswith("grpc.reflection."):
        return "reflection"
    if service == "hanzo.v1.Commerce":
        return "ingest" if name == "IngestEvents" else "decide"
    if service == "inference.GRPCInferenceService":
        return "admin" if name.startswith("Repository") else "infer"
    return "admin"  # Admin, and anything added later until it is given a scope of its own


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyFile:
    """The keys file: read, and written whole (a temporary file renamed over it, mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, ApiKey]:
        """Keys by digest; ValueError naming the file and what is wrong."""
        if not self.path.exists():
            return {}
        try:
            entries = json.loads(self.path.read_text())["keys"]
            keys = [ApiKey(e["id"], e["sha256"], tuple(e["scopes"]), tuple(e.get("merchants", ["*"])))
                    for e in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path}: not a keys file ({type(exc).__name__}: {exc})") from None
        for key in keys:
            unknown = set(key.scopes) - set(SCOPES)
            if unknown:
                raise ValueError(f"{self.path}: key {key.id!r} has unknown scopes {sorted(unknown)} "
                                 f"(scopes: {', '.join(SCOPES)})")
        return {key.sha256: key for key in keys}

    def write(self, keys: list[ApiKey]) -> None:
        staging = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"keys": [{"id": k.id, "sha256": k.sha256, "scopes": list(k.scopes),
                                 "merchants": list(k.merchants)} for k in keys]}, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, self.path)

    def add(self, scopes: list[str], merchants: list[str], name: str = "") -> tuple[ApiKey, str]:
        """A new key: (its entry, the key itself, shown once)."""
        unknown = set(scopes) - set(SCOPES)
        if unknown or not scopes:
            raise ValueError(f"scopes must be some of {', '.join(SCOPES)}, not {', '.join(scopes) or 'none'}")
        keys = list(self.read().values())
        name = name or f"key-{secrets.token_hex(4)}"
        if any(k.id == name for k in keys):
            raise ValueError(f"{self.path} already holds a key named {name!r}")
        secret = "hz_" + secrets.token_urlsafe(32)
        entry = ApiKey(name, digest(secret), tuple(scopes), tuple(merchants or ["*"]))
        self.write(keys + [entry])
        return entry, secret

    def revoke(self, name: str) -> None:
        keys = list(self.read().values())
        if not any(k.id == name for k in keys):
            raise ValueError(f"{self.path} holds no key named {name!r} (keys: {', '.join(k.id for k in keys)})")
        self.write([k for k in keys if k.id != name])


@dataclass
class KeyStore:
    """The keys the server checks against, read again when the file changes (at most once a
    `recheck_s`)."""
    file: KeyFile
    recheck_s: float = 1.0
    keys: dict[str, ApiKey] = field(default_factory=dict)
    _seen: tuple = ()
    _checked: float = 0.0

    def __post_init__(self) -> None:
        self.keys = self.file.read()  # a bad file at start stops the start
        self._seen = self._stamp()

    def _stamp(self) -> tuple:
        try:
            st = self.file.path.stat()
            return st.st_mtime_ns, st.st_size, st.st_ino
        except FileNotFoundError:
            return ()

    def lookup(self, secret: str) -> ApiKey | None:
        now = time.monotonic()
        if now - self._checked >= self.recheck_s:
            self._checked = now
            stamp = self._stamp()
            if stamp != self._seen:
                self._seen = stamp
                try:
                    self.keys = self.file.read()
                    log.info("API keys read again", extra={"keys": len(self.keys)})
                except ValueError as exc:
                    log.error("API keys file no longer reads; the keys read before stay in force",
                              extra={"error": str(exc)[:300]})
        return self.keys.get(digest(secret))


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED without a known key, PERMISSION_DENIED without the method's scope."""

    def __init__(self, config: AccessConfig, store: KeyStore) -> None:
        self.config = config
        self.store = store

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None:
            return None
        refusal = self.refusal(details.method, dict(details.invocation_metadata or ()))
        return handler if refusal is None else _refusing(handler, *refusal)

    def refusal(self, method: str, metadata: dict) -> tuple[grpc.StatusCode, str] | None:
        scope = scope_of(method)
        if (scope == "health" and self.config.health_open) or (scope == "reflection" and self.config.reflection_open):
            return None
        secret = _presented(metadata)
        if secret is None:
            return grpc.StatusCode.UNAUTHENTICATED, ("no API key: send the metadata 'authorization: Bearer <key>' "
                                                     "(or 'x-api-key: <key>')")
        key = self.store.lookup(secret)
        if key is None:
            return grpc.StatusCode.UNAUTHENTICATED, "the API key is not known here (revoked, or mistyped)"
        needed = "admin" if scope in ("health", "reflection") else scope
        if needed not in key.scopes:
            log.info("call refused: scope", extra={"key": key.id, "method": method, "needed": needed})
            return grpc.StatusCode.PERMISSION_DENIED, (f"the API key {key.id!r} may not call {method}: it needs the "
                                                       f"scope {needed!r} (it has {', '.join(key.scopes)})")
        return None


def _presented(metadata: dict) -> str | None:
    value = metadata.get("authorization")
    if isinstance(value, str) and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    value = metadata.get("x-api-key")
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _refusing(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, text: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that ends the call with `code` at once."""
    async def unary(request, context):
        await context.abort(code, text)

    async def streaming(request, context):
        await context.abort(code, text)
        yield  # pragma: no cover - never reached: abort raises

    kinds = {(False, False): (grpc.unary_unary_rpc_method_handler, unary),
             (False, True): (grpc.unary_stream_rpc_method_handler, streaming),
             (True, False): (grpc.stream_unary_rpc_method_handler, unary),
             (True, True): (grpc.stream_stream_rpc_method_handler, streaming)}
    make, behaviour = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(behaviour, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
