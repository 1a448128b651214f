"""Operator endpoints: the server's own latency histograms for load harnesses."""
from __future__ import annotations

from hanzo.v1 import admin_pb2, admin_pb2_grpc

from .latency import LatencyRecorder

SERVICE = "hanzo.v1.Admin"
SCOPE = "admin"  # every method (api/access.py)
AUDITED = frozenset({"GetLatency"})  # it may reset the histograms a harness reads


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, latency: LatencyRecorder) -> None:
        self._latency = latency

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
