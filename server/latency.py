"""The server's own latency histograms per RPC: handler entry to response written."""
from __future__ import annotations

import time

from hdrh.histogram import HdrHistogram

# Microseconds from 1 us to 60 s at 3 significant digits.
_LOWEST_US, _HIGHEST_US, _DIGITS = 1, 60_000_000, 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)


class LatencyRecorder:
    def __init__(self) -> None:
        self._histograms: dict[str, HdrHistogram] = {}
        self._since = time.monotonic()

    def record(self, method: str, elapsed_ns: int) -> None:
        histogram = self._histograms.get(method)
        if histogram is None:
            histogram = self._histograms[method] = new_histogram()
        histogram.record_value(min(max(elapsed_ns // 1000, _LOWEST_US), _HIGHEST_US))

    def snapshot(self, reset: bool = False) -> tuple[dict[str, HdrHistogram], float]:
        """The histograms by method and the seconds they cover; `reset` starts a new window."""
        window = time.monotonic() - self._since
        histograms = self._histograms
        if reset:
            self._histograms = {}
            self._since = time.monotonic()
        return histograms, window
