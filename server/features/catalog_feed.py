"""The catalogue's changes shared by replicas: with the Redis store the feature tables, the
dedup index and the fraud network live in Redis, but each server keeps the catalogue (prices,
costs, stock, records) in process. Every batch a replica accepts that touches the catalogue
(catalog_update, price_change, stock_update, purchase) is also appended to one Redis stream;
every replica follows the stream and applies the other replicas' batches, so a price changed
through one replica is quoted by all of them a moment later.

A replica's position in the stream is kept in its snapshots: after a restart it replays its
own log (and snapshot), then the stream from where that state left it, so no batch counts
twice. The stream keeps the last `max_entries` batches (Redis MAXLEN ~); a replica that falls
further behind than that misses the oldest changes and says so in its log."""
from __future__ import annotations

import logging

import msgpack

from .store import CATALOG_EVENTS

log = logging.getLogger(__name__)

START = "0-0"


class CatalogFeed:
    def __init__(self, client, prefix: str, replica: str, max_entries: int = 1_000_000) -> None:
        self.redis = client
        self.key = f"{prefix}:catalog-feed"
        self.replica = replica
        self.max_entries = max_entries
        self.position = START  # the last stream entry this replica has applied or skipped

    def entry(self, records: list[dict]) -> tuple[str, int, str, bytes] | None:
        """The stream entry of a batch's catalogue changes (None: it has none): (stream, length,
        from, events), appended by the batch's own apply script (redis_apply.lua), atomically."""
        changes = [r for r in records if r["event_type"] in CATALOG_EVENTS]
        if not changes:
            return None
        return self.key, self.max_entries, self.replica, msgpack.packb(changes, use_bin_type=True)

    def read(self, block_ms: int = 1000, count: int = 100) -> tuple[list[list[dict]], str]:
        """The other replicas' batches after this replica's position (waiting up to
        `block_ms` for one), and the id to move the position to once they are applied (the
        caller moves it, on the thread that applies them, so a snapshot never records a
        position ahead of the catalogue it holds). Blocking: call from a worker thread."""
        reply = self.redis.xread({self.key: self.position}, count=count, block=block_ms)
        batches, last = [], self.position
        for _, entries in reply or ():
            for entry_id, fields in entries:
                last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                if fields.get(b"from", b"").decode() != self.replica:
                    batches.append(msgpack.unpackb(fields[b"events"], raw=False))
        return batches, last

    def check_trimmed(self) -> None:
        """Warn when entries after this replica's position were trimmed before it read them
        (Redis 7 reports the newest deleted id)."""
        if self.position == START or not self.redis.exists(self.key):
            return
        deleted = self.redis.xinfo_stream(self.key).get("max-deleted-entry-id")
        deleted = deleted.decode() if isinstance(deleted, bytes) else deleted
        if deleted and _after(deleted, self.position):
            log.warning("catalog feed: changes after this replica's position were trimmed before it read them; "
                        "its catalogue may miss them", extra={"position": self.position, "deleted": deleted})


def _after(a: str, b: str) -> bool:
    """Stream id a after stream id b (ids are 'milliseconds-sequence')."""
    return tuple(int(x) for x in a.split("-")) > tuple(int(x) for x in b.split("-"))
