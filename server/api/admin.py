"""Operator endpoints: the server's own latency histograms for load harnesses, the erasure
of a shopper on request, and models' production pointers (status, promote, roll back)."""
from __future__ import annotations

import json
from typing import Awaitable, Callable, Sequence

from hanzo.v1 import admin_pb2, admin_pb2_grpc

from ..models.errors import FailedPrecondition, InvalidArgument, NotFound, quote
from ..models.promotion import Promotions
from .access import CALLER
from .edge import Edge
from .latency import LatencyRecorder
from .merchants import merchant_of

SERVICE = "hanzo.v1.Admin"
SCOPE = "admin"  # every method (api/access.py)
# GetLatency may reset the histograms a harness reads; ModelVersions only reads
AUDITED = frozenset({"GetLatency", "Forget", "PromoteModel", "RollbackModel"})
WRAPPED = ["Forget", "ModelVersions", "PromoteModel", "RollbackModel"]


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, latency: LatencyRecorder, edge: Edge | None = None,
                 forget: Callable[[str, str], Awaitable[dict]] | None = None,
                 promotions: Promotions | Sequence[Promotions] = (),
                 gate_status: Callable[[str], dict | None] = lambda model: None) -> None:
        self._latency = latency
        self._forget = forget
        # the repository's models, then models kept as files (pricing's demand model)
        self._promotions = [promotions] if isinstance(promotions, Promotions) else list(promotions)
        self._gate_status = gate_status  # the experiments' gate, for the models it judges
        if edge is not None:  # errors to status codes, field limits and timing as every surface has them
            edge.wrap_servicer(self, SERVICE, WRAPPED, gated=False)

    def _promotions_for(self, name: str) -> Promotions:
        """Whoever holds the model; the repository's (which refuses an unknown name) otherwise."""
        if not self._promotions:
            raise FailedPrecondition("this server has no model repository")
        return next((p for p in self._promotions if name in p.repository.names()), self._promotions[0])

    async def ModelVersions(self, request, context):
        if request.model_name:
            report = versions_report(self._promotions_for(request.model_name), [request.model_name])
        elif not self._promotions:
            raise FailedPrecondition("this server has no model repository")
        else:
            report = admin_pb2.ModelVersionsReport()
            for promotions in self._promotions:
                report.models.extend(versions_report(promotions, promotions.repository.names()).models)
        self._with_gate(report)
        return report

    def _with_gate(self, report: admin_pb2.ModelVersionsReport) -> admin_pb2.ModelVersionsReport:
        for status in report.models:
            gate = self._gate_status(status.model_name)
            if gate is not None:
                status.gate_json = json.dumps(gate)
        return report

    async def PromoteModel(self, request, context):
        if not request.model_name:
            raise InvalidArgument("model_name", "name the model to promote")
        if request.model_version < 0:
            raise InvalidArgument("model_version", f"{request.model_version}: a version number, or 0 for the "
                                                   f"candidate")
        promotions = self._promotions_for(request.model_name)
        names = await promotions.promote(request.model_name, int(request.model_version), _caller())
        return self._with_gate(versions_report(promotions, names))

    async def RollbackModel(self, request, context):
        if not request.model_name:
            raise InvalidArgument("model_name", "name the model to roll back")
        promotions = self._promotions_for(request.model_name)
        names = await promotions.rollback(request.model_name, _caller())
        return self._with_gate(versions_report(promotions, names))

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


def _caller() -> str:
    key = CALLER.get()
    return key.id if key is not None else "a caller without credentials"


def versions_report(promotions: Promotions, names: list[str]) -> admin_pb2.ModelVersionsReport:
    """Each model's pointer, serving version, candidate and previous production, and its
    versions' states; NOT_FOUND for a name the repository does not hold."""
    repository = promotions.repository
    report = admin_pb2.ModelVersionsReport()
    index, models = repository.index(), repository.names()
    for name in names:
        if name not in models:
            raise NotFound(f"model {quote(name)} is not in the repository (models: {models[:50]})")
        pointer = repository.production(name)
        candidate = repository.candidate(name)
        status = report.models.add(model_name=name, has_pointer=pointer is not None,
                                   serving_version=repository.serving_version(name),
                                   candidate_version=candidate.version if candidate else 0)
        if pointer is not None:
            status.production_version = pointer.version
            status.previous_version = pointer.previous or 0
            status.history.extend(pointer.history)
            status.last_action, status.changed_by, status.changed_at = pointer.action, pointer.by, pointer.at
        for entry in index:
            if entry.name == name and entry.version:
                status.versions.add(version=int(entry.version), state=entry.state, reason=entry.reason)
    return report
