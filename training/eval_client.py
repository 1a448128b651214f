"""What the `hanzo eval` commands share: a log's events sent to a running server through
IngestEvents, in batches, any refusal an error (an evaluation on a partial history means
nothing)."""
from __future__ import annotations

from hanzo.server.features.events import record_to_proto
from hanzo.v1 import commerce_pb2


def send_events(stub, records: list[dict], request_id: str, batch: int = 1000) -> None:
    for start in range(0, len(records), batch):
        request = commerce_pb2.EventBatch(request_id=f"{request_id}-{start}")
        for record in records[start:start + batch]:
            record_to_proto(record, request.events.add())
        ack = stub.IngestEvents(request, timeout=60)
        if ack.rejects:
            raise RuntimeError(f"the server refused {len(ack.rejects)} events, e.g. {ack.rejects[0].reason}")
