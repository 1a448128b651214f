"""Versions that failed to build, remembered by fingerprint so a poll does not rebuild them
every second.

A version whose files or config.pbtxt change is retried on the next poll (its fingerprint
differs). An unchanged one is retried too, with exponential backoff, because not every
failure is in the files: a GPU out of memory for the moment, a remote Triton that is down,
an artifact its loader reads from elsewhere. An explicit load retries at once.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_FIRST_RETRY_S = 1.0
DEFAULT_MAX_RETRY_S = 300.0


@dataclass
class _Failure:
    fingerprint: str
    reason: str
    attempts: int
    retry_at: float


class FailedBuilds:
    """(model, version) -> the last failed build, its reason and when to try it again."""

    def __init__(self, first_retry_s: float = DEFAULT_FIRST_RETRY_S, max_retry_s: float = DEFAULT_MAX_RETRY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self._clock = clock
        self._failures: dict[tuple[str, int], _Failure] = {}

    def held_back(self, model: str, version: int, fingerprint: str) -> str | None:
        """The remembered reason while the same files failed and their retry time has not
        come; None when the version should be built."""
        failure = self._failures.get((model, version))
        if failure is None or failure.fingerprint != fingerprint or self._clock() >= failure.retry_at:
            return None
        return failure.reason

    def failed(self, model: str, version: int, fingerprint: str, reason: str) -> float:
        """Remember a failed build; returns the seconds until it is tried again unchanged."""
        earlier = self._failures.get((model, version))
        attempts = earlier.attempts + 1 if earlier and earlier.fingerprint == fingerprint else 1
        # the exponent capped: a version failing for days must not overflow the float
        delay = min(self.first_retry_s * 2.0 ** min(attempts - 1, 32), self.max_retry_s)
        self._failures[(model, version)] = _Failure(fingerprint, reason, attempts, self._clock() + delay)
        return delay

    def succeeded(self, model: str, version: int) -> None:
        self._failures.pop((model, version), None)

    def keep_only(self, model: str, versions: set[int]) -> None:
        """Forget the failures of version folders that are gone."""
        for key in [k for k in self._failures if k[0] == model and k[1] not in versions]:
            del self._failures[key]

    def forget(self, model: str) -> None:
        self.keep_only(model, set())
