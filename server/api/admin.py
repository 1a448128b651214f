"""Operator endpoints: the server's own latency histograms for load harnesses, and the erasure
of a shopper on request."""
from __future__ import annotations

import json
from typing import Awaitable, Callable

import grpc

from hanzo.v1 import admin_pb2, admin_pb2_grpc

from ..features.tenancy import merchant_problem
from ..models.errors import FailedPrecondition, HanzoError, InvalidArgument, quote
from .latency import LatencyRecorder

SERVICE = "hanzo.v1.Admin"
SCOPE = "admin"  # every method (api/access.py)
AUDITED = frozenset({"GetLatency", "Forget"})  # GetLatency may reset the histograms a harness reads
MAX_USER_ID = 256


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, latency: LatencyRecorder,
                 forget: Callable[[str, str], Awaitable[dict]] | None = None) -> None:
        self._latency = latency
        self._forget = forget

    async def Forget(self, request, context):
        try:
            problem = merchant_problem(request.merchant_id)
            if problem is not None:
                raise InvalidArgument("merchant_id", f"{quote(request.merchant_id)}: {problem}")
            if not request.user_id or len(request.user_id) > MAX_USER_ID:
                raise InvalidArgument("user_id", f"name the shopper to erase (1-{MAX_USER_ID} characters)")
            if self._forget is None:
                raise HanzoError("this server has no store to erase from")
            try:
                receipt = await self._forget(request.merchant_id, request.user_id)
            except ValueError as exc:  # the store cannot be rebuilt (a log retention dropped)
                raise FailedPrecondition(str(exc)) from None
        except HanzoError as exc:
            from .edge import STATUS

            await context.abort(STATUS.get(exc.code, grpc.StatusCode.INTERNAL), exc.message)
        return admin_pb2.ForgetReceipt(events_removed=receipt["events_removed"], events_kept=receipt["events_kept"],
                                       seconds=receipt["seconds"], receipt_json=json.dumps(receipt))

    async def GetLatency(self, request, context):
        histograms, window = self._latency.snapshot(reset=request.reset)
        report = admin_pb2.LatencyReport(window_seconds=window)
        for method in sorted(histograms):
            h = histograms[method]
            report.methods.add(
                method=method, count=h.get_total_count(), hdr_histogram=h.encode().decode("ascii"),
                p50_us=h.get_value_at_percentile(50), p99_us=h.get_value_at_percentile(99),
                p999_us=h.get_value_at_percentile(99.9), max_us=h.get_max_value())
        return report
