"""The server's own latency histograms per RPC: handler entry to response written."""
from __future__ import annotations

import time
from bisect import bisect_left

from hdrh.histogram import HdrHistogram

# Microseconds from 1 us to 60 s at 3 significant digits.
_LOWEST_US, _HIGHEST_US, _DIGITS = 1, 60_000_000, 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)


# Prometheus buckets (upper bounds, ns): never reset, unlike the HDR window Admin.GetLatency reads.
BUCKETS_NS = (50_000, 100_000, 250_000, 500_000, 1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000,
              25_000_000, 50_000_000, 100_000_000, 250_000_000, 1_000_000_000, 5_000_000_000)


class LatencyRecorder:
    def __init__(self) -> None:
        self._histograms: dict[str, HdrHistogram] = {}
        self._since = time.monotonic()
        # per (method, status code): count per bucket, then past the last
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], int] = {}

    def record(self, method: str, elapsed_ns: int, code: str = "OK") -> None:
        """One call's time; `code` its status (gRPC's name: OK, INVALID_ARGUMENT ...)."""
        histogram = self._histograms.get(method)
        if histogram is None:
            histogram = self._histograms[method] = new_histogram()
        histogram.record_value(min(max(elapsed_ns // 1000, _LOWEST_US), _HIGHEST_US))
        key = (method, code)
        counts = self._buckets.get(key)
        if counts is None:
            counts = self._buckets[key] = [0] * (len(BUCKETS_NS) + 1)
            self._sums[key] = 0
        counts[bisect_left(BUCKETS_NS, elapsed_ns)] += 1
        self._sums[key] += elapsed_ns

    def cumulative(self) -> dict[tuple[str, str], tuple[tuple[int, ...], list[int], int]]:
        """Per (method, status code) since start: bucket bounds (ns), counts per bucket (the
        last past every bound), total ns."""
        return {m: (BUCKETS_NS, list(c), self._sums[m]) for m, c in self._buckets.items()}

    def snapshot(self, reset: bool = False) -> tuple[dict[str, HdrHistogram], float]:
        """The histograms by method and the seconds they cover; `reset` starts a new window."""
        window = time.monotonic() - self._since
        histograms = self._histograms
        if reset:
            self._histograms = {}
            self._since = time.monotonic()
        return histograms, window
