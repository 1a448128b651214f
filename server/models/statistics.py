"""Per model version counters in Triton's ModelStatistics shape. Updated on the event loop
thread only, so they need no lock."""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass
class BatchDurations:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class ModelStatistics:
    inference_count: int = 0  # rows (batch elements) answered
    execution_count: int = 0  # batches run
    last_inference_ms: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, BatchDurations] = field(default_factory=dict)
    # the response cache (models/response_cache.py): answers from it, and lookups that missed
    cache_hit: Duration = field(default_factory=Duration)
    cache_miss: Duration = field(default_factory=Duration)
    # Failures by reason, e.g. "queue_full", "deadline", "backend".
    failures: dict[str, int] = field(default_factory=dict)

    def record_batch(self, rows: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        self.execution_count += 1
        self.inference_count += rows
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.compute_input.add(input_ns)
        self.compute_infer.add(infer_ns)
        self.compute_output.add(output_ns)
        per_size = self.batches.get(rows)
        if per_size is None:
            per_size = self.batches[rows] = BatchDurations()
        per_size.compute_input.add(input_ns)
        per_size.compute_infer.add(infer_ns)
        per_size.compute_output.add(output_ns)

    def record_failure(self, reason: str, ns: int) -> None:
        self.fail.add(ns)
        self.failures[reason] = self.failures.get(reason, 0) + 1
