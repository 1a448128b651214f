"""ModelStreamInfer: inference requests in, their answers out, on one bidirectional stream, as
tritonclient's start_stream / async_stream_infer use it.

Each request is answered as ModelInfer answers it (the servicer's own `infer`), up to
`IN_FLIGHT` of a stream's requests at once, so a stream's requests batch with each other and
with everyone else's; answers go out as they are ready, each carrying its request's `id` (a
caller that needs them in order sends one at a time, or matches by id). A request that fails
is answered with `error_message` (and its id), as Triton does, and the stream goes on; a body
that does not decode, or a field over its limit, is such a failure too. A stream holds at most
IN_FLIGHT requests it has not answered: past that it stops reading, so a fast writer cannot
pile requests up in memory. Each request's time is recorded under the stream's method, with its
status code, as the edge records a unary call's."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, AsyncIterator

from tritonclient.grpc import service_pb2 as pb

from ..models.errors import HanzoError, InvalidArgument
from .latency import LatencyRecorder
from .limits import RequestLimits
from .services import Undecodable

if TYPE_CHECKING:
    from .kserve import KServeServicer

log = logging.getLogger(__name__)

METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
IN_FLIGHT = 64


async def stream_answers(servicer: "KServeServicer", requests: AsyncIterator, deadline: float | None,
                         limits: RequestLimits | None, latency: LatencyRecorder | None) -> AsyncIterator:
    answers: asyncio.Queue = asyncio.Queue()
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(request) -> None:
        started, code = time.perf_counter_ns(), "OK"
        try:
            if isinstance(request, Undecodable):
                raise InvalidArgument("request", request.message())
            if limits is not None:
                limits.check(request)
            answer = pb.ModelStreamInferResponse(infer_response=await servicer.infer(request, deadline))
        except HanzoError as exc:
            code, answer = exc.code, _failed(request, exc.message)
        except Exception:  # a bug answers this request, never the stream's others
            log.exception("stream request failed", extra={"method": METHOD})
            code, answer = "INTERNAL", _failed(request, "internal error in ModelStreamInfer; the server log has "
                                                        "the details")
        finally:
            slots.release()
        if latency is not None:
            latency.record(METHOD, time.perf_counter_ns() - started, code)
        answers.put_nowait(answer)

    async def read() -> None:
        running: set[asyncio.Task] = set()
        try:
            async for request in requests:
                await slots.acquire()
                task = asyncio.get_running_loop().create_task(one(request))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running)
        except asyncio.CancelledError:  # the caller went: its requests still running are not wanted
            for task in running:
                task.cancel()
            raise
        finally:
            answers.put_nowait(None)  # the stream's end, however reading ended

    reader = asyncio.get_running_loop().create_task(read())
    try:
        while (answer := await answers.get()) is not None:
            yield answer
        await reader  # a broken stream's error ends the call
    finally:
        reader.cancel()


def _failed(request, message: str) -> pb.ModelStreamInferResponse:
    response = pb.ModelStreamInferResponse(error_message=message)
    if isinstance(request, pb.ModelInferRequest):
        response.infer_response.id = request.id
        response.infer_response.model_name = request.model_name
        response.infer_response.model_version = request.model_version
    return response
