"""Ingestion throughput: distinct events from a file, pre-serialized into EventBatch requests,
sent with a fixed number of batches in flight; events acknowledged per second and the ack
latency, beside the server's own histogram of IngestEvents."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import uvloop
from hdrh.histogram import HdrHistogram

from hanzo.server.features.events import record_to_proto
from hanzo.server.features.formats import read_records
from hanzo.v1 import commerce_pb2

from .openloop import new_histogram

METHOD = "/hanzo.v1.Commerce/IngestEvents"


@dataclass
class IngestReport:
    events: int
    batches: int
    seconds: float
    accepted: int
    duplicates: int
    rejected: int
    ack_ms: dict[str, float] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def prepare(path: Path, batch: int, limit: int | None = None) -> list[bytes]:
    """Serialized EventBatch requests of `batch` events each, in file order."""
    records = read_records(path)
    if limit:
        records = records[:limit]
    requests = []
    for start in range(0, len(records), batch):
        request = commerce_pb2.EventBatch(request_id=f"bench-{start}")
        for record in records[start:start + batch]:
            record_to_proto(record, request.events.add())
        requests.append(request.SerializeToString())
    return requests


async def _drive(url: str, requests: list[bytes], concurrency: int) -> tuple[IngestReport, HdrHistogram]:
    latency = new_histogram()
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0, "events": 0}
    queue = list(reversed(requests))
    async with grpc.aio.insecure_channel(url, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        await channel.channel_ready()
        call = channel.unary_unary(METHOD, response_deserializer=commerce_pb2.IngestAck.FromString)

        async def worker() -> None:
            while queue:
                body = queue.pop()
                sent = time.perf_counter_ns()
                ack = await call(body, timeout=60)
                latency.record_value(max((time.perf_counter_ns() - sent) // 1000, 1))
                totals["accepted"] += ack.accepted
                totals["duplicates"] += ack.duplicates
                totals["rejected"] += len(ack.rejects)
                totals["events"] += ack.accepted + ack.duplicates + len(ack.rejects)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    report = IngestReport(totals["events"], len(requests), seconds, totals["accepted"], totals["duplicates"],
                          totals["rejected"])
    return report, latency


def run(url: str, requests: list[bytes], concurrency: int = 4) -> IngestReport:
    from .runner import summarize

    report, latency = uvloop.run(_drive(url, requests, concurrency))
    report.ack_ms = summarize(latency)
    return report
