"""`hanzo ingest FILE`: canonical events into a store, batched through a running server's
IngestEvents, or in bulk straight into a data directory (no server running on it)."""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from ..features.events import EventError
from ..features.formats import iter_records
from .common import CommandError, add_command, add_feature_arguments, feature_overrides, positive


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "ingest", "events from a JSONL file (gzip or not) into a feature store",
                         "Events from a JSONL file (gzip or not): through a running server's IngestEvents "
                         "(--url), or in bulk straight into a data directory no server is running on.")
    parser.add_argument("file", type=Path, help="canonical events, one JSON object a line")
    parser.add_argument("--url", help="a running server: batches through IngestEvents")
    parser.add_argument("--batch", type=int, default=500, help="events a batch")
    parser.add_argument("--concurrency", type=int, default=4, help="batches in flight over gRPC")
    parser.add_argument("--sort", action="store_true",
                        help="read the whole file and send it in event-time order (for unordered history)")
    add_feature_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise CommandError(f"{args.file}: no such file")
    positive("--batch", args.batch)
    positive("--concurrency", args.concurrency)
    if args.url:
        import grpc

        try:
            totals = asyncio.run(over_grpc(args.file, args.url, args.batch, args.concurrency, sort=args.sort))
        except* grpc.aio.AioRpcError as group:
            exc = group.exceptions[0]
            raise CommandError(f"--url {args.url}: {exc.code().name}: {exc.details()}") from None
    else:
        from ..features.log_frames import LogDamaged
        from ..features.service import FeatureStoreConfig

        config = FeatureStoreConfig(**{k: v for k, v in feature_overrides(args).items() if v is not None})
        try:
            totals = bulk(args.file, config, args.batch, sort=args.sort)
        except (OSError, LogDamaged) as exc:  # the directory is a running server's, or its log is damaged
            raise CommandError(str(exc)) from None
    totals.report()
    return 0


def _batches(path: Path, size: int, sort: bool = False):
    """(records, their line numbers) batches; `sort` reads the whole file first and orders it
    by event time (files of history need not be in order; the store's horizon does)."""
    items = iter_records(path)
    if sort:
        items = sorted(items, key=lambda item: (isinstance(item[1], EventError) or item[1]["timestamp"] is None,
                                                0 if isinstance(item[1], EventError) else item[1]["timestamp"]))
    batch, lines = [], []
    for number, record in items:
        batch.append(record)
        lines.append(number)
        if len(batch) == size:
            yield batch, lines
            batch, lines = [], []
    if batch:
        yield batch, lines


class Totals:
    def __init__(self) -> None:
        self.accepted = self.duplicates = self.rejected = self.sent = 0
        self.started = time.monotonic()

    def report(self, out=sys.stdout) -> None:
        elapsed = time.monotonic() - self.started
        print(f"{self.sent} events in {elapsed:.2f} s ({self.sent / max(elapsed, 1e-9):,.0f}/s): "
              f"{self.accepted} accepted, {self.duplicates} duplicates, {self.rejected} rejected", file=out)


def bulk(path: Path, config, batch: int = 5000, sort: bool = False) -> Totals:
    """In-process: the same validation, dedup, log and store as the server, then a snapshot."""
    from ..features.service import FeatureService

    service = FeatureService(config)
    service.open()
    totals = Totals()
    try:
        for records, lines in _batches(path, batch, sort):
            result = service.ingest_blocking(records)
            totals.sent += len(records)
            totals.accepted += result.accepted
            totals.duplicates += result.duplicates
            totals.rejected += len(result.rejects)
            for reject in result.rejects[:5]:
                print(f"{path}:{lines[reject.index]}: {reject.field}: {reject.reason}", file=sys.stderr)
    finally:
        service.close()
    return totals


async def over_grpc(path: Path, url: str, batch: int = 500, concurrency: int = 4, timeout: float = 30.0,
                    sort: bool = False) -> Totals:
    """Batches through IngestEvents, `concurrency` in flight; a batch is retried on
    UNAVAILABLE (the event ids make a retry safe)."""
    import grpc

    from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

    from ..features.events import record_to_proto

    totals = Totals()
    queue: asyncio.Queue = asyncio.Queue(maxsize=concurrency * 2)

    async def sender(stub) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            request, lines = item
            for attempt in range(5):
                try:
                    ack = await stub.IngestEvents(request, timeout=timeout)
                    break
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * 2 ** attempt)
            totals.accepted += ack.accepted
            totals.duplicates += ack.duplicates
            totals.rejected += len(ack.rejects)
            for reject in ack.rejects[:5]:
                print(f"{path}:{lines[reject.index]}: {reject.field}: {reject.reason}", file=sys.stderr)

    async def producer() -> None:
        for records, lines in _batches(path, batch, sort):
            request = commerce_pb2.EventBatch(request_id=f"ingest-{path.name}-{lines[0]}")
            sent_lines = []
            for record, line in zip(records, lines):
                if isinstance(record, EventError):  # not even an event: reported here, never sent
                    totals.rejected += 1
                    print(f"{path}:{line}: {record.field}: {record.reason}", file=sys.stderr)
                    continue
                record_to_proto(record, request.events.add())
                sent_lines.append(line)
            totals.sent += len(records)
            if sent_lines:
                await queue.put((request, sent_lines))
        for _ in range(concurrency):
            await queue.put(None)

    async with grpc.aio.insecure_channel(url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        # a sender that gives up stops the others and the reading, rather than leave it waiting
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(sender(stub))
            group.create_task(producer())
    return totals
