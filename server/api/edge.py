"""The one place where a call enters and leaves: timing into the server's latency histogram
(handler entry to response written), error mapping to status codes, and the log line of a
failed call with its request id."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

import grpc

from ..models.errors import HanzoError, Unavailable
from .latency import LatencyRecorder

log = logging.getLogger("hanzo.rpc")

STATUS = {
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "UNIMPLEMENTED": grpc.StatusCode.UNIMPLEMENTED,
    "INTERNAL": grpc.StatusCode.INTERNAL,
}

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The client's deadline as time.monotonic() seconds, or None."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e8:
        return None
    return time.monotonic() + remaining


def describe(request: Any) -> dict[str, str]:
    """What a log line of a failed call says about its request."""
    fields = {"request_id": getattr(request, "request_id", "") or getattr(request, "id", "")}
    model = getattr(request, "model_name", "")
    if model:
        fields["model"] = model
        fields["model_version"] = getattr(request, "model_version", "") or "latest"
    return fields


def wrap(method: str, handler: Handler, latency: LatencyRecorder,
         ready: Callable[[], bool] | None = None) -> Handler:
    """`method` is the full gRPC method name, e.g. /hanzo.v1.Commerce/Recommend. With `ready`, a
    call that arrives while it says False is refused UNAVAILABLE before any work."""
    record = latency.record
    perf = time.perf_counter_ns

    async def edge(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = perf()
        context.add_done_callback(lambda _: record(method, perf() - start))
        try:
            if ready is not None and not ready():
                raise Unavailable("the server is not serving yet (starting: health says NOT_SERVING) or is "
                                  "draining; retry")
            return await handler(request, context)
        except HanzoError as exc:
            code, message = STATUS[exc.code], exc.message
            log.info("call failed", extra={"method": method, "code": exc.code, "reason": message, **describe(request)})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            code = grpc.StatusCode.INTERNAL
            log.exception("call crashed", extra={"method": method, **describe(request)})
            message = f"internal error in {method} ({type(exc).__name__}); the server log has the details"
        await context.abort(code, message)

    edge.__name__ = handler.__name__
    return edge


def wrap_servicer(servicer: Any, service: str, methods: list[str], latency: LatencyRecorder,
                  ready: Callable[[], bool] | None = None) -> None:
    """Replace each named handler of `servicer` by its edge-wrapped version."""
    for name in methods:
        setattr(servicer, name, wrap(f"/{service}/{name}", getattr(servicer, name), latency, ready))
