"""Per-model metrics under Triton's own names (`--metrics-names triton`), so dashboards and
alerts written for Triton read Hanzo unchanged: `nv_inference_request_success`,
`nv_inference_request_failure{reason}`, `nv_inference_count`, `nv_inference_exec_count`, the
cumulative `nv_inference_*_duration_us` counters and the `nv_inference_pending_request_count`
gauge, labelled `model` and `version`, counters without the `_total` suffix.

prometheus_client always writes a counter's samples with `_total`, so these lines are written
here, in the text format Triton's own exporter (prometheus-cpp) writes: labels in alphabetical
order, every failure reason present from the moment a version loads (at 0), so an alert on a
rate of failures has a series before the first one."""
from __future__ import annotations

from ..models import ModelRepository

# Triton's failure reasons, and which of Hanzo's count as each
FAILURE_REASONS = {"BACKEND": ("backend",), "CANCELED": ("cancelled",), "OTHER": (),
                   "REJECTED": ("queue_full", "deadline")}

_COUNTERS = (
    ("nv_inference_request_success", "Number of successful inference requests, all batch sizes",
     lambda s: s.success.count),
    ("nv_inference_count", "Number of inferences performed (does not include cached requests)",
     lambda s: s.inference_count),
    ("nv_inference_exec_count", "Number of model executions performed (does not include cached requests)",
     lambda s: s.execution_count),
    ("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds (includes cached "
     "requests)", lambda s: (s.success.ns + s.fail.ns) // 1000),
    ("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds (includes cached "
     "requests)", lambda s: s.queue.ns // 1000),
    ("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds (does not include "
     "cached requests)", lambda s: s.compute_input.ns // 1000),
    ("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds (does not "
     "include cached requests)", lambda s: s.compute_infer.ns // 1000),
    ("nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in microseconds (does "
     "not include cached requests)", lambda s: s.compute_output.ns // 1000),
)


# the response cache's, for the versions whose config enables it
_CACHE = (
    ("nv_cache_num_hits_per_model", "Number of cache hits per model", lambda s: s.cache_hit.count),
    ("nv_cache_num_misses_per_model", "Number of cache misses per model", lambda s: s.cache_miss.count),
    ("nv_cache_hit_duration_per_model", "Total cache hit duration per model, in microseconds",
     lambda s: s.cache_hit.ns // 1000),
    ("nv_cache_miss_duration_per_model", "Total cache miss (insert) duration per model, in microseconds",
     lambda s: s.cache_miss.ns // 1000),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def triton_model_metrics(repository: ModelRepository) -> bytes:
    """The exposition text of every loaded version's metrics under Triton's names."""
    versions = [(name, v) for name in repository.names() for v in repository.ready_versions(name)]
    lines: list[str] = []

    def family(name: str, help_text: str, kind: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("nv_inference_request_failure", "Number of failed inference requests, all batch sizes", "counter")
    for name, version in versions:
        failures = version.stats.failures
        known = {ours for reasons in FAILURE_REASONS.values() for ours in reasons}
        for reason, ours in FAILURE_REASONS.items():
            count = sum(failures.get(r, 0) for r in ours)
            if reason == "OTHER":
                count = sum(n for r, n in failures.items() if r not in known)
            lines.append(f'nv_inference_request_failure{{model="{_escape(name)}",reason="{reason}",'
                         f'version="{version.version_str}"}} {count}')
    for metric, help_text, value in _COUNTERS:
        family(metric, help_text, "counter")
        for name, version in versions:
            lines.append(f'{metric}{{model="{_escape(name)}",version="{version.version_str}"}} {int(value(version.stats))}')
    cached = [(name, version) for name, version in versions if version.cache is not None]
    for metric, help_text, value in _CACHE:
        family(metric, help_text, "counter")
        for name, version in cached:
            lines.append(f'{metric}{{model="{_escape(name)}",version="{version.version_str}"}} {int(value(version.stats))}')
    family("nv_inference_pending_request_count", "Instantaneous number of pending requests awaiting execution "
           "per-model.", "gauge")
    for name, version in versions:
        lines.append(f'nv_inference_pending_request_count{{model="{_escape(name)}",version="{version.version_str}"}} '
                     f"{version.batcher.queue_size}")
    return ("\n".join(lines) + "\n").encode()
