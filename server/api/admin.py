"""Operator endpoints: the server's own latency histograms for load harnesses, and the erasure
of a shopper on request."""
from __future__ import annotations

import json
from typing import Awaitable, Callable

from hanzo.v1 import admin_pb2, admin_pb2_grpc

from ..models.errors import FailedPrecondition, InvalidArgument
from .edge import Edge
from .latency import LatencyRecorder
from .merchants import merchant_of

SERVICE = "hanzo.v1.Admin"
SCOPE = "admin"  # every method (api/access.py)
AUDITED = frozenset({"GetLatency", "Forget"})  # GetLatency may reset the histograms a harness reads


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, latency: LatencyRecorder, edge: Edge | None = None,
                 forget: Callable[[str, str], Awaitable[dict]] | None = None) -> None:
        self._latency = latency
        self._forget = forget
        if edge is not None:  # errors to status codes, field limits and timing as every surface has them
            edge.wrap_servicer(self, SERVICE, ["Forget"], gated=False)

    async def Forget(self, request, context):
        merchant = merchant_of(request)
        if not request.user_id:
            raise InvalidArgument("user_id", "name the shopper to erase")
        if self._forget is None:
            raise FailedPrecondition("this server holds no feature store to erase from")
        try:
            receipt = await self._forget(merchant, request.user_id)
        except ValueError as exc:  # the store cannot be rebuilt (a log retention dropped)
            raise FailedPrecondition(str(exc)) from None
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
