"""Each arm's own latency (a surface's time for the call, per model version, arm and comparison,
so the arms compared cover one period), for the gate's guard that a better candidate is not a
slower one."""
from __future__ import annotations

from hdrh.histogram import HdrHistogram


class ArmLatency:
    def __init__(self) -> None:
        self._histograms: dict[tuple[str, str, str], HdrHistogram] = {}

    def record(self, version: str, arm: str, experiment: str, seconds: float) -> None:
        histogram = self._histograms.get((version, arm, experiment))
        if histogram is None:
            histogram = self._histograms[(version, arm, experiment)] = HdrHistogram(1, 60_000_000, 2)
        histogram.record_value(max(1, min(int(seconds * 1e6), 60_000_000)))

    def keep(self, experiments: set[str]) -> None:
        for key in [k for k in self._histograms if k[2] not in experiments]:
            del self._histograms[key]

    def p99_ms(self, version: str, arm: str, experiment: str) -> float | None:
        histogram = self._histograms.get((version, arm, experiment))
        if histogram is None or histogram.get_total_count() == 0:
            return None
        return histogram.get_value_at_percentile(99) / 1000
