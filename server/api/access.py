"""Who may call what. Every RPC declares its scope where it is registered (services.add_service
refuses a method without one); with credentials configured (api/keys.py) each call is checked
before its handler runs: UNAUTHENTICATED without a known key or client identity,
PERMISSION_DENIED without the method's scope, and, once the edge has decoded the request,
PERMISSION_DENIED for a merchant_id the credential does not act for (`merchant_refusal`).

Scopes: `decide` (the Commerce decisions and GetFeatures), `ingest` (IngestEvents), `infer`
(KServe inference and metadata), `admin` (repository load / unload and index, Admin). Health
(gRPC health, ServerLive, ServerReady) and reflection are open or closed by configuration, and
need the admin scope when closed. Admin actions are written to the audit log (api/audit.py),
refusals included, whether or not credentials are configured."""
from __future__ import annotations

import inspect
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable

import grpc

from ..models.errors import quote
from .audit import AuditLog
from .keys import ANY_MERCHANT, SCOPES, ApiKey, KeyStore

REFUSALS_PER_S = 10

# what a method may declare: the credential scopes, and the two open-by-configuration ones
DECLARABLE = SCOPES + ("health", "reflection")

# The credential a call was admitted with, for the edge's merchant check: set by the guard
# around the handler, so it is the handler's task's own.
CALLER: ContextVar[ApiKey | None] = ContextVar("hanzo_caller", default=None)


@dataclass
class AccessConfig:
    # A JSON file of API keys and client identities (`hanzo keys add --file F`); empty: no
    # credentials, no check (and the server then listens on loopback only).
    keys_file: str = ""
    health_open: bool = True  # gRPC health, ServerLive and ServerReady answer without a key
    reflection_open: bool = False  # gRPC reflection answers without a key
    # With keys: the metrics port answers only a bearer key with the metrics or admin scope
    # (Prometheus' `authorization` setting), unless this is true.
    metrics_open: bool = False
    # TLS on the gRPC and metrics ports (PEM files, read again when they change); with
    # tls_client_ca, mutual TLS: clients must show a certificate that CA signed.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # The audit log of admin actions; empty: audit.jsonl in the feature store's data_dir.
    audit_log: str = ""


def merchant_refusal(request: Any) -> str | None:
    """Why the call's credential may not act for the request's merchant_id (None: it may, or the
    request names no merchant, or no credentials are configured)."""
    merchant = getattr(request, "merchant_id", None)
    return None if merchant is None else merchant_denied(merchant)


def merchant_denied(merchant: str) -> str | None:
    """Why the call's credential may not act for `merchant` (None: it may)."""
    key = CALLER.get()
    if key is None or ANY_MERCHANT in key.merchants or merchant in key.merchants:
        return None
    named = f"merchant_id {quote(merchant)}" if merchant else "no merchant_id"
    return (f"merchant_id: the API key {key.id!r} acts for {', '.join(key.merchants)} only, and this request "
            f"names {named}")


class Access:
    """The check in front of every handler, and the audit of admin actions."""

    def __init__(self, config: AccessConfig, store: KeyStore | None, audit: AuditLog | None) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        # refused attempts are audited at most REFUSALS_PER_S a second (the rest counted in the
        # next line): anyone can make them, and the audit log's disk is the event log's
        self._refusal_budget = float(REFUSALS_PER_S)
        self._refusal_at = time.monotonic()
        self.refusals_unrecorded = 0
        if store is not None and audit is not None:
            store.on_change = self._keys_changed

    def refusal(self, scope: str, metadata: dict,
                identities: Callable[[], list[str]]) -> tuple[ApiKey | None, tuple[grpc.StatusCode, str] | None]:
        """(the caller's credential, None) or (None, (code, reason)); (None, None): no check."""
        if self.store is None:
            return None, None
        if (scope == "health" and self.config.health_open) or (scope == "reflection" and self.config.reflection_open):
            return None, None
        secret = _presented(metadata)
        if secret is not None:
            key = self.store.lookup(secret)
            if key is None:
                return None, (grpc.StatusCode.UNAUTHENTICATED, "the API key is not known here (revoked, or mistyped)")
        else:
            key = self.store.lookup_identity(identities())
            if key is None:
                return None, (grpc.StatusCode.UNAUTHENTICATED,
                              "no API key: send the metadata 'authorization: Bearer <key>' (or 'x-api-key: <key>'), "
                              "or a client certificate whose identity a key names")
        needed = "admin" if scope in ("health", "reflection") else scope
        if needed not in key.scopes:
            return key, (grpc.StatusCode.PERMISSION_DENIED,
                         f"the API key {key.id!r} may not call this method: it needs the scope {needed!r} "
                         f"(it has {', '.join(key.scopes)})")
        return key, None

    def guard(self, method: str, scope: str, behaviour: Callable, request_streaming: bool, response_streaming: bool,
              audited: bool = False, request_class: type | None = None) -> Callable:
        """`behaviour` behind the check (and the audit, when `audited`); unchanged when there is
        nothing to do."""
        if scope not in DECLARABLE:
            raise ValueError(f"{method}: scope {scope!r} is none of {', '.join(DECLARABLE)}")
        audit = self.audit if audited else None
        if self.store is None and audit is None:
            return behaviour
        check = self.refusal

        def admit(request: Any, context: grpc.aio.ServicerContext):
            key, refused = check(scope, dict(context.invocation_metadata() or ()), lambda: _identities(context))
            if audit is not None and refused is not None:
                unrecorded = self._refusal_unrecorded()
                if unrecorded is not None:
                    extra = {"refusals_not_recorded_before": unrecorded} if unrecorded else {}
                    audit.record(_who(key, context), method, refused[0].name, reason=refused[1],
                                 **_target(request, request_class), **extra)
            return key, refused

        async def enter(request: Any, context: grpc.aio.ServicerContext) -> ApiKey | None:
            """The caller's credential; the call ends here, refused, without one that may call."""
            key, refused = admit(request, context)
            if refused is not None:
                await context.abort(*refused)
            return key

        def outcome(key: ApiKey | None, request: Any, context: grpc.aio.ServicerContext, error: BaseException | None):
            if audit is None:
                return
            code = context.code() if error is not None else None
            result = getattr(code, "name", None) or ("OK" if error is None else type(error).__name__)
            detail = {"reason": str(context.details() or "")} if error is not None and context.details() else {}
            audit.record(_who(key, context), method, result, **_target(request, request_class), **detail)

        if response_streaming and inspect.isasyncgenfunction(behaviour):  # else it writes with context.write
            async def streaming(request, context):
                key = await enter(request if not request_streaming else None, context)
                token, error = CALLER.set(key), None
                try:
                    async for response in behaviour(request, context):
                        yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    CALLER.reset(token)
                    outcome(key, None, context, error)
            return streaming

        async def unary(request, context):
            key = await enter(request if not request_streaming else None, context)
            token, error = CALLER.set(key), None
            try:
                if not request_streaming and request.__class__ is not bytes:
                    # a decoded request (a service the edge does not decode for) is merchant-checked here
                    other = merchant_refusal(request)
                    if other is not None:
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, other)
                return await behaviour(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                CALLER.reset(token)
                outcome(key, request if not request_streaming else None, context, error)
        return unary

    def _refusal_unrecorded(self) -> int | None:
        """None: over the budget, this refusal goes unrecorded (counted); else how many went
        unrecorded before it."""
        now = time.monotonic()
        budget = self._refusal_budget + (now - self._refusal_at) * REFUSALS_PER_S
        self._refusal_budget, self._refusal_at = min(float(REFUSALS_PER_S), budget), now
        if self._refusal_budget < 1.0:
            self.refusals_unrecorded += 1
            return None
        self._refusal_budget -= 1.0
        unrecorded, self.refusals_unrecorded = self.refusals_unrecorded, 0
        return unrecorded

    def _keys_changed(self, before: list[ApiKey], after: list[ApiKey]) -> None:
        was, now = {k.id: k for k in before}, {k.id: k for k in after}
        for name in sorted(set(now) - set(was)):
            self.audit.record("keys file", "key added", "OK", key=name, scopes=",".join(now[name].scopes),
                              merchants=",".join(now[name].merchants))
        for name in sorted(set(was) - set(now)):
            self.audit.record("keys file", "key revoked", "OK", key=name)
        for name in sorted(set(was) & set(now)):
            if was[name] != now[name]:
                self.audit.record("keys file", "key changed", "OK", key=name, scopes=",".join(now[name].scopes),
                                  merchants=",".join(now[name].merchants))


def _presented(metadata: dict) -> str | None:
    value = metadata.get("authorization")
    if isinstance(value, str) and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    value = metadata.get("x-api-key")
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _identities(context: grpc.aio.ServicerContext) -> list[str]:
    """The verified client certificate's names: subject alternative names, then common name
    (empty without mutual TLS: gRPC fills these only for a certificate the client CA signed)."""
    auth = context.auth_context() or {}
    names = auth.get("x509_subject_alternative_name", []) + auth.get("x509_common_name", [])
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def _who(key: ApiKey | None, context: grpc.aio.ServicerContext) -> str:
    if key is not None:
        return key.id
    return f"anonymous from {context.peer()}"


def _target(request: Any, request_class: type | None) -> dict:
    """What an audited call acted on, from its request (decoded here when the edge takes bytes)."""
    if isinstance(request, bytes) and request_class is not None:
        try:
            request = request_class.FromString(request)
        except Exception:  # an undecodable body is refused by the edge; the record says what it can
            return {}
    fields = {}
    # never a user id: the audit log holds no shopper
    for name in ("model_name", "model_version", "reset", "merchant_id"):
        value = getattr(request, name, None)
        if value not in (None, ""):
            fields[name] = value
    return fields
