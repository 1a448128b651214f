"""Prometheus metrics on their own HTTP port (`[server] metrics_port`): Triton's metric names
and labels under a `hanzo_` prefix (counters end in `_total`, as Prometheus names them:
`hanzo_inference_count_total` is Triton's `nv_inference_count`), per-RPC latency histograms,
batch-size histograms, and the feature store's and event log's gauges.

Everything is read from the counters the server keeps anyway, when Prometheus scrapes, on the
event loop (a small asyncio HTTP responder, not a thread), so the hot paths pay nothing and no
counter is read while the loop changes it."""
from __future__ import annotations

import asyncio
import ssl
import logging
from typing import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    CollectorRegistry, Metric, SummaryMetricFamily)

from ..features.service import FeatureService
from ..api.admission import REASONS, Admission
from ..experiments.drift import DriftWindow
from ..experiments.labels import LabelJoin
from ..experiments.outcomes import OutcomeJoin
from ..experiments.quotes import QuoteJoin
from .outcome_metrics import drift_metrics, experiment_metrics, label_metrics, quote_metrics
from ..api.latency import LatencyRecorder
from ..models import ModelRepository
from ..surfaces.served_log import STATS as SERVED_LOG
from ..surfaces.shadow import STATS as SHADOW

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
FAILURES = ("backend", "deadline", "queue_full")  # the batcher's failure reasons (models/batcher.py)
# Triton's per-model counters: (metric, what, ModelStatistics field, count or microseconds)
_DURATIONS = (
    ("inference_request_duration_us", "cumulative end-to-end inference request handling time", "success"),
    ("inference_queue_duration_us", "cumulative time requests spent waiting in the scheduling queue", "queue"),
    ("inference_compute_input_duration_us", "cumulative compute input time", "compute_input"),
    ("inference_compute_infer_duration_us", "cumulative compute inference time", "compute_infer"),
    ("inference_compute_output_duration_us", "cumulative compute output time", "compute_output"),
)


class ServerCollector:
    def __init__(self, repository: ModelRepository, latency: LatencyRecorder, features: FeatureService,
                 admission: Admission | None = None, late: dict[str, int] | None = None,
                 outcomes: OutcomeJoin | None = None,
                 drift: Callable[[], dict[tuple[str, str], DriftWindow]] = dict,
                 labels: LabelJoin | None = None, quotes: QuoteJoin | None = None, names: str = "hanzo") -> None:
        self.repository = repository
        # "triton": the per-model counters are written under Triton's names (app/triton_metrics.py)
        self.names = names
        self.quotes = quotes  # pricing's quotes joined to the purchases at their price
        self.labels = labels  # fraud scores joined to their chargebacks
        self.drift = drift  # (model, version) -> its drift window, read at each scrape
        self.outcomes = outcomes  # lists served joined to their clicks and purchases
        self.latency = latency
        self.features = features
        self.admission = admission
        self.late = late  # the edge's count of gated calls that returned after their deadline

    def collect(self) -> Iterator[Metric]:
        yield from self._models()
        yield self._rpc_latency()
        if self.late is not None:
            late = CounterMetricFamily("hanzo_rpc_late", "gated calls whose handler returned after the client's "
                                       "deadline (admission control on or off)", labels=["method"])
            for method, n in sorted(self.late.items()):
                late.add_metric([method], n)
            yield late
        if self.admission is not None:
            yield from admission_metrics(self.admission)
        yield from self._store()
        yield from self._served_log()
        yield from self._shadow()
        yield from drift_metrics(self.drift())
        yield from experiment_metrics(self.outcomes)
        yield from label_metrics(self.labels)
        yield from quote_metrics(self.quotes)

    def _models(self) -> Iterator[Metric]:
        labels = ["model", "version"]
        success = CounterMetricFamily("hanzo_inference_request_success", "successful inference requests", labels=labels)
        failure = CounterMetricFamily("hanzo_inference_request_failure", "failed inference requests, by reason",
                                      labels=labels + ["reason"])
        count = CounterMetricFamily("hanzo_inference_count", "inferences performed (batch rows)", labels=labels)
        executions = CounterMetricFamily("hanzo_inference_exec_count", "model executions (batches) performed",
                                         labels=labels)
        durations = {name: CounterMetricFamily(f"hanzo_{name}", what, labels=labels) for name, what, _ in _DURATIONS}
        pending = GaugeMetricFamily("hanzo_inference_pending_request_count", "requests queued, not yet executing",
                                    labels=labels)
        ready = GaugeMetricFamily("hanzo_model_ready", "1 while the version serves", labels=labels)
        hits = CounterMetricFamily("hanzo_cache_hits", "answers from the response cache (models that enable it)",
                                   labels=labels)
        misses = CounterMetricFamily("hanzo_cache_misses", "requests the response cache did not hold",
                                     labels=labels)
        batches = HistogramMetricFamily("hanzo_batch_size", "rows per executed batch", labels=labels)
        for name in self.repository.names():
            for version in self.repository.ready_versions(name):
                key = [name, version.version_str]
                stats = version.stats
                success.add_metric(key, stats.success.count)
                for reason in sorted(set(FAILURES) | set(stats.failures)):  # each reason from the start, at 0
                    failure.add_metric(key + [reason], stats.failures.get(reason, 0))
                count.add_metric(key, stats.inference_count)
                executions.add_metric(key, stats.execution_count)
                for metric, _, field in _DURATIONS:
                    durations[metric].add_metric(key, getattr(stats, field).ns / 1000.0)
                pending.add_metric(key, version.batcher.queue_size)
                ready.add_metric(key, 1.0)
                if version.cache is not None:
                    hits.add_metric(key, stats.cache_hit.count)
                    misses.add_metric(key, stats.cache_miss.count)
                by_size = {size: d.compute_infer.count for size, d in stats.batches.items()}
                buckets = [(str(bound), sum(n for size, n in by_size.items() if size <= bound))
                           for bound in BATCH_BUCKETS] + [("+Inf", sum(by_size.values()))]
                batches.add_metric(key, buckets, sum_value=stats.inference_count)
        cache = self.repository.options.response_cache
        used = GaugeMetricFamily("hanzo_response_cache_bytes", "bytes the response cache holds (of its budget: "
                                 "hanzo_response_cache_capacity_bytes)")
        capacity = GaugeMetricFamily("hanzo_response_cache_capacity_bytes", "the response cache's budget")
        evicted = CounterMetricFamily("hanzo_response_cache_evictions", "answers dropped for room")
        if cache is not None:
            used.add_metric([], cache.used_bytes)
            capacity.add_metric([], cache.capacity_bytes)
            evicted.add_metric([], cache.evicted)
        yield from (used, capacity, evicted)
        if self.names == "triton":  # those are written under Triton's names instead
            yield from (ready, batches)
        else:
            yield from (success, failure, count, executions, *durations.values(), pending, ready, batches, hits,
                        misses)

    def _rpc_latency(self) -> Metric:
        family = HistogramMetricFamily("hanzo_rpc_duration_seconds", "handler entry to response written, per "
                                       "method (gRPC's, or HTTP's) and status code", labels=["method", "code"])
        for (method, code), (bounds, counts, total_ns) in sorted(self.latency.cumulative().items()):
            running, buckets = 0, []
            for bound, n in zip(bounds, counts):
                running += n
                buckets.append((repr(bound / 1e9), running))
            buckets.append(("+Inf", running + counts[-1]))
            family.add_metric([method, code], buckets, sum_value=total_ns / 1e9)
        return family

    def _store(self) -> Iterator[Metric]:
        service = self.features
        applied = CounterMetricFamily("hanzo_events_applied", "events applied to the feature store")
        applied.add_metric([], service.applied_seq)
        yield applied
        if service.log is not None:
            size = GaugeMetricFamily("hanzo_event_log_bytes", "event log size on disk")
            size.add_metric([], service.log.size_bytes())
            yield size
        entities = GaugeMetricFamily("hanzo_feature_entities", "entities the store holds, by kind", labels=["entity"])
        for name, index in service.store.entities.items():
            entities.add_metric([name], len(index))
        yield entities
        watermark = GaugeMetricFamily("hanzo_feature_watermark_seconds", "the newest event time applied")
        watermark.add_metric([], service.store.watermark / 1000.0)
        yield watermark
        if service.redis is None:
            tables = GaugeMetricFamily("hanzo_feature_table_bytes", "feature tables' memory")
            tables.add_metric([], service.store.nbytes())
            yield tables


    @staticmethod
    def _served_log() -> Iterator[Metric]:
        lost = CounterMetricFamily("hanzo_served_events_lost", "served events (recommendation_shown, search, "
                                   "order) that never reached the event log: full buffer, failed flush, store closed",
                                   labels=["event_type", "reason"])
        for (kind, reason), n in sorted(SERVED_LOG.lost.items()):
            lost.add_metric([kind, reason], n)
        failures = CounterMetricFamily("hanzo_served_log_flush_failures", "served-log flushes that failed")
        failures.add_metric([], SERVED_LOG.flush_failures)
        flushed = CounterMetricFamily("hanzo_served_events_flushed", "served events handed to the event log")
        flushed.add_metric([], SERVED_LOG.flushed)
        yield from (lost, failures, flushed)

    @staticmethod
    def _shadow() -> Iterator[Metric]:
        calls = CounterMetricFamily("hanzo_shadow_calls", "shadow copies a candidate answered or failed",
                                    labels=["model", "outcome"])
        for (model, outcome), n in sorted(SHADOW.calls.items()):
            calls.add_metric([model, outcome], n)
        skipped = CounterMetricFamily("hanzo_shadow_skipped", "requests not copied to the candidate: share, "
                                      "in_flight, cpu_budget", labels=["model", "reason"])
        for (model, reason), n in sorted(SHADOW.skipped.items()):
            skipped.add_metric([model, reason], n)
        lost = CounterMetricFamily("hanzo_shadow_lines_lost", "shadow answers the log's queue had no room for")
        lost.add_metric([], SHADOW.lines_lost)
        yield from (calls, skipped, lost)


def admission_metrics(admission: Admission) -> Iterator[Metric]:
    """Per gated RPC: the adaptive limit, calls in flight and waiting, queue wait, refusals by
    reason, and calls whose handler returned after the client's deadline."""
    labels = ["method"]
    limit = GaugeMetricFamily("hanzo_admission_limit", "concurrency limit per RPC (adapts to latency)",
                              labels=labels)
    in_flight = GaugeMetricFamily("hanzo_admission_in_flight", "admitted calls not yet returned", labels=labels)
    queued = GaugeMetricFamily("hanzo_admission_queued", "calls waiting for a slot", labels=labels)
    admitted = CounterMetricFamily("hanzo_admission_admitted", "calls admitted", labels=labels)
    waited = SummaryMetricFamily("hanzo_admission_queue_wait_seconds",
                                 "time admitted calls waited for a slot (count: calls that waited)", labels=labels)
    refused = CounterMetricFamily("hanzo_admission_refused", "calls refused RESOURCE_EXHAUSTED or dropped, by "
                                  "reason (cpu, queue_full, deadline, cancelled)", labels=labels + ["reason"])
    late = CounterMetricFamily("hanzo_admission_late", "admitted calls whose handler returned after the "
                               "client's deadline", labels=labels)
    service = GaugeMetricFamily("hanzo_admission_service_seconds", "moving average of admitted calls' "
                                "service time (admission to handler return)", labels=labels)
    total = GaugeMetricFamily("hanzo_admission_total_in_flight", "admitted calls of every RPC")
    total.add_metric([], admission.in_flight)
    saturation = admission.saturation
    cpu = GaugeMetricFamily("hanzo_admission_cpu_utilisation", "the server's CPU over the last window, 0-1 of "
                            "the CPUs it may use or of the event loop's thread, whichever is busier")
    cpu.add_metric([], saturation.utilisation)
    shed = GaugeMetricFamily("hanzo_admission_shed_share", "share of new calls turned away for the CPU "
                             "(reason cpu; [admission] cpu_shedding)")
    shed.add_metric([], saturation.shed)
    merchant_shed = GaugeMetricFamily("hanzo_admission_merchant_shed_share", "share of a heavy merchant's new "
                                      "calls turned away while the CPU is past merchant_cpu_target (reason "
                                      "merchant_cpu)")
    merchant_shed.add_metric([], admission.shares.shed)
    for method, gate in sorted(admission.gates.items()):
        key = [method]
        limit.add_metric(key, int(gate.limit))
        in_flight.add_metric(key, gate.in_flight)
        queued.add_metric(key, len(gate.queue))
        admitted.add_metric(key, gate.admitted)
        waited.add_metric(key, count_value=gate.waited, sum_value=gate.wait_ns / 1e9)
        for reason in REASONS:
            refused.add_metric(key + [reason], gate.refused[reason])
        late.add_metric(key, gate.late)
        service.add_metric(key, gate.service_ns / 1e9)
    yield from (limit, in_flight, queued, admitted, waited, refused, late, service, total, cpu, shed, merchant_shed)


async def serve_metrics(registry: CollectorRegistry, host: str, port: int, tls: ssl.SSLContext | None = None,
                        allowed: Callable[[bytes], bool] | None = None,
                        more: Callable[[], bytes] | None = None) -> asyncio.AbstractServer:
    """GET /metrics over HTTP/1.0 (HTTPS with `tls`), on the running loop; other paths are 404.
    `allowed(request head)`: whether the scrape's credentials let it read (401 otherwise).
    `more()`: exposition text written after the registry's (Triton's names)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            path = request.split(b" ", 2)[1].split(b"?")[0] if request.count(b" ") >= 2 else b""
            if not request.startswith(b"GET "):
                writer.write(b"HTTP/1.0 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            elif path != b"/metrics":
                writer.write(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            elif allowed is not None and not allowed(request):
                writer.write(b'HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="hanzo metrics"\r\n'
                             b"Content-Length: 0\r\n\r\n")
            else:
                try:
                    body = generate_latest(registry) + (more() if more is not None else b"")
                except Exception:  # a scrape must never take the server down
                    log.exception("metrics collection failed")
                    writer.write(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(f"HTTP/1.0 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
                                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, host, port, ssl=tls)
    log.info("metrics listening", extra={"port": server.sockets[0].getsockname()[1]})
    return server


def registry_for(collector: ServerCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
