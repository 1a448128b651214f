"""The one place where a call enters and leaves: timing into the server's latency histogram
(handler entry to response written), error mapping to status codes, and the log line of a
failed call with its request id."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

import grpc
from google.protobuf import descriptor_pool, message
from google.protobuf.message_factory import GetMessageClass

from ..features.pseudonyms import PERSONAL_CONTEXT
from ..models.errors import HanzoError, InvalidArgument, PermissionDenied, Unavailable
from ..surfaces.shadow import RESPONDING
from .access import merchant_denied, merchant_refusal
from .admission import Admission, Refused
from .latency import LatencyRecorder
from .limits import RequestLimits
from .services import Undecodable, lenient_decoder

log = logging.getLogger("hanzo.rpc")

STATUS = {
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "PERMISSION_DENIED": grpc.StatusCode.PERMISSION_DENIED,
    "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "UNIMPLEMENTED": grpc.StatusCode.UNIMPLEMENTED,
    "INTERNAL": grpc.StatusCode.INTERNAL,
}

# A status message travels in a trailer that gRPC caps (8 KiB by default): a longer one would
# turn the answer into RESOURCE_EXHAUSTED on the client's side.
MAX_STATUS_CHARS = 1024
LOGGED_ID_CHARS = 128

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The client's deadline as time.monotonic() seconds, or None."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e8:
        return None
    return time.monotonic() + remaining


def describe(request: Any) -> dict[str, str]:
    """What a log line of a failed call says about its request."""
    # cut, because the call may have failed for an over-long id
    fields = {"request_id": (getattr(request, "request_id", "") or getattr(request, "id", ""))[:LOGGED_ID_CHARS]}
    model = getattr(request, "model_name", "")
    if model:
        fields["model"] = model[:LOGGED_ID_CHARS]
        fields["model_version"] = str(getattr(request, "model_version", "") or "latest")[:LOGGED_ID_CHARS]
    return fields


class Edge:
    """What every call passes through on its way in and out: the latency histogram, the
    accepting gate (starting or draining: UNAVAILABLE before any work), admission control
    (RESOURCE_EXHAUSTED before the body is decoded), decoding and field limits, error mapping,
    and the count of calls in flight that a drain waits for."""

    def __init__(self, latency: LatencyRecorder, limits: RequestLimits | None = None,
                 accepting: Callable[[], bool] | None = None, admission: Admission | None = None) -> None:
        self.latency = latency
        self.limits = limits
        self.accepting = accepting
        self.admission = admission
        self.in_flight = 0
        # gated calls whose handler returned after the client's deadline, per method, admission
        # control on or off (work done for a caller who had gone: hanzo_rpc_late_total)
        self.late: dict[str, int] = {}
        self._quiet: asyncio.Future | None = None  # resolved when in_flight next drops to 0
        self._tasks: set[asyncio.Task] = set()  # the handlers running, for a drain past its grace

    async def quiet(self) -> None:
        """Until no call is in flight (at once if none is): a drain waits here, and background
        work that must not delay a call (shadow copies) runs in the gaps between calls."""
        while self.in_flight:
            if self._quiet is None or self._quiet.done():
                self._quiet = asyncio.get_running_loop().create_future()
            await asyncio.wait((self._quiet,))  # never cancels the future other waiters share

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is in flight, at most `timeout` seconds; True if none is."""
        if self.in_flight == 0:
            return True
        try:
            await asyncio.wait_for(self.quiet(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def cancel_in_flight(self, timeout: float = 2.0) -> int:
        """Cancel the handlers still running (a drain past its grace, before the store and
        models close under them); returns how many there were."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return len(tasks)

    def _finished(self, task: asyncio.Task | None) -> None:
        """A call's status was sent (gRPC's done callback): only now is it out of flight."""
        self.in_flight -= 1
        self._tasks.discard(task)
        if self.in_flight == 0 and self._quiet is not None and not self._quiet.done():
            self._quiet.set_result(None)

    def wrap_servicer(self, servicer: Any, service: str, methods: list[str], gated: bool = True) -> None:
        """Replace each named handler of `servicer` by its edge-wrapped version, which decodes
        the request body itself (services.add_service then registers it undecoded); `gated`:
        refused while the server is not accepting calls, and admission-controlled."""
        descriptor = descriptor_pool.Default().FindServiceByName(service)
        for name in methods:
            rpc = descriptor.methods_by_name[name]
            # a stream of requests is decoded message by message, by gRPC (services.add_service)
            request_class = None if rpc.client_streaming else GetMessageClass(rpc.input_type)
            setattr(servicer, name, self.wrap(f"/{service}/{name}", getattr(servicer, name), gated, request_class))

    def wrap(self, method: str, handler: Handler, gated: bool = True, request_class: type | None = None) -> Handler:
        """`method` is the full gRPC method name, e.g. /hanzo.v1.Commerce/Recommend. With
        `request_class` the call arrives as bytes and is decoded here, after admission. A body
        that did not decode (services.Undecodable) and a field over its limit are refused
        INVALID_ARGUMENT before the handler runs."""
        record = self.latency.record
        perf = time.perf_counter_ns
        accepting = self.accepting if gated else None
        gate = self.admission.gate(method) if gated and self.admission is not None else None
        decode = lenient_decoder(request_class) if request_class is not None else None
        # whose call it is, read off the undecoded body for the merchants' shares of the gate
        peek = merchant_peek if gate is not None and takes_merchant_first(request_class) else None
        limits = self.limits
        late_counts = self.late
        Message = message.Message
        responding, unset = RESPONDING.set, RESPONDING.reset

        async def edge(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = perf()
            task = asyncio.current_task()
            self.in_flight += 1
            self._tasks.add(task)

            def done(_: Any) -> None:
                code = context.code()  # None: OK
                record(method, perf() - start, code.name if code is not None else "OK")
                self._finished(task)

            context.add_done_callback(done)
            admitted = 0
            ran = False
            merchant = b"" if peek is not None else None  # None: an RPC that names no merchant
            try:
                if accepting is not None and not accepting():
                    raise Unavailable("the server is not serving yet (starting: health says NOT_SERVING) or is "
                                      "draining; retry")
                if gate is not None:
                    if peek is not None and request.__class__ is bytes:
                        merchant = peek(request)
                        refused = merchant_denied(merchant.decode("utf-8", "replace"))  # before a slot
                        if refused is not None:
                            raise PermissionDenied(refused)
                    waiting = gate.admit(context, merchant)
                    if waiting is not None:
                        try:
                            await waiting
                        except asyncio.CancelledError:
                            gate.abandon(waiting, merchant)
                            raise
                    admitted = perf()
                ran = gated
                if decode is not None:
                    request = decode(request)
                if request.__class__ is Undecodable:
                    raise InvalidArgument("request", request.message())
                if limits is not None and isinstance(request, Message):
                    limits.check(request)
                refused = merchant_refusal(request)  # the caller's credential, set by api/access.py
                if refused is not None:
                    raise PermissionDenied(refused)
                if peek is not None and merchant != request.merchant_id.encode()[:64]:
                    # never for a body that decodes: the share must be charged to the merchant it names
                    raise InvalidArgument("merchant_id", "could not be read before the request was decoded")
                token = responding(context)  # a shadow copy starts when this call is done (surfaces/shadow.py)
                try:
                    return await handler(request, context)
                finally:
                    unset(token)
            except Refused as exc:  # counted by reason in the gate's metrics; a log line each would add load
                code, text = grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message
            except HanzoError as exc:
                code, text = _failed(method, exc, request)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                code = grpc.StatusCode.INTERNAL
                log.exception("call crashed", extra={"method": method, **describe(request)})
                text = f"internal error in {method} ({type(exc).__name__}); the server log has the details"
            finally:
                if ran:
                    remaining = context.time_remaining()
                    late = remaining is not None and remaining <= 0
                    if late:
                        late_counts[method] = late_counts.get(method, 0) + 1
                    if admitted:
                        now = perf()
                        gate.release(now - admitted, now, late, merchant)
            await context.abort(code, text)

        edge.__name__ = handler.__name__
        edge.decodes = decode is not None  # services.add_service: register it without a deserializer
        return edge


def takes_merchant_first(request_class: type | None) -> bool:
    """Whether the request message's field 1 is its merchant_id (every Commerce request)."""
    fields = getattr(getattr(request_class, "DESCRIPTOR", None), "fields_by_name", None)
    if not fields:
        return False
    field = fields.get("merchant_id")
    return field is not None and field.number == 1


def merchant_peek(body: bytes) -> bytes:
    """The merchant_id of an encoded request whose field 1 it is, without decoding the message:
    its top-level fields are stepped over and the last field 1 kept, as a decoder keeps it (b""
    when it is absent or the body does not parse; the edge's decoding then says why). At most
    64 bytes are kept: a longer id is refused once the body is decoded."""
    found, at, end = b"", 0, len(body)
    try:
        while at < end:
            tag, at = _varint(body, at)
            kind = tag & 7
            if kind == 0:
                _, at = _varint(body, at)
            elif kind == 2:
                size, at = _varint(body, at)
                if tag >> 3 == 1:
                    found = body[at:at + min(size, 64)]
                at += size
            elif kind == 1:
                at += 8
            elif kind == 5:
                at += 4
            else:
                return b""
    except IndexError:
        return b""
    return found if at == end else b""


def _varint(body: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = body[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def _personal(field: str) -> bool:
    name = field.rsplit(".", 1)[-1].split("[", 1)[0]
    return name in PERSONAL_CONTEXT


def cut_message(text: str) -> str:
    """A status message as a caller gets it: at most MAX_STATUS_CHARS, with the full length said."""
    if len(text) <= MAX_STATUS_CHARS:
        return text
    return text[:MAX_STATUS_CHARS] + f"... ({len(text)} characters)"


def _failed(method: str, exc: HanzoError, request: Any) -> tuple[grpc.StatusCode, str]:
    """The status of a call that raised `exc`, logged with its request id."""
    text = cut_message(exc.message)
    field = getattr(exc, "field", "")
    # the caller hears its own value quoted back; the log never holds a shopper's email, IP, card or address
    logged = f"{field}: (a personal field: its value is not logged)" if _personal(field) else text
    log.info("call failed", extra={"method": method, "code": exc.code, "reason": logged, **describe(request)})
    return STATUS[exc.code], text


def wrap(method: str, handler: Handler, latency: LatencyRecorder) -> Handler:
    """One handler through an edge of its own (the load harness's do-nothing floor)."""
    return Edge(latency).wrap(method, handler)
