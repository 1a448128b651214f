"""Retention: events older than `[features] retention_days` (by the store's clock, event time)
leave the event log, the snapshots and the online store, so a shopper who has not come back in
that long is no longer held at all, and nobody's old history is. The store is rebuilt from the
events within the period, as an erasure rebuilds it (rebase.Rebuild; from a running server, by
the same low-priority child and the same short last stretch), once the log's oldest event is
`retention_every_days` past the period: so nothing is held longer than the sum of the two.

Kept past the period, because they are the shop's and not a shopper's: the catalogue's own
events (catalog_update, price_change, stock_update) as they are, and the unnamed shop's
purchases reduced to the stock they moved (erasure_records.Anonymiser.purchase), so the
catalogue's products, prices and stock come out of the rebuild as they went in."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from .erasure_records import Anonymiser
from .events import format_timestamp
from .log import replay_log
from .store_config import FeatureStoreConfig

DAY_MS = 86_400_000
CATALOGUE_ONLY = frozenset({"catalog_update", "price_change", "stock_update"})


def cutoff(config: FeatureStoreConfig, watermark: int) -> int:
    """The oldest event time kept (ms)."""
    return watermark - int(config.retention_days * DAY_MS)


def oldest_event(data_dir: Path) -> int | None:
    """The oldest event time in the log's first batch (the log is in arrival order, so later
    batches may hold older events: the rebuild finds every one; this only says when one is due).
    Reads the first segment: for a thread, not the event loop."""
    for _, records in replay_log(Path(data_dir) / "log"):
        return min(r["timestamp"] for r in records)
    return None


def due(config: FeatureStoreConfig, oldest: int | None, watermark: int) -> bool:
    """Whether a pass is due, the log's oldest event being `oldest` (oldest_event)."""
    if config.retention_days <= 0 or oldest is None:
        return False
    return oldest < cutoff(config, watermark) - int(config.retention_every_days * DAY_MS)


class KeepRecent:
    """A batch of the log without what the period no longer covers (as rebase.Rebuild's
    `change`); counts what went in `removed`."""

    def __init__(self, oldest_kept: int, removed: Counter, salt: bytes = b"") -> None:
        self.oldest_kept, self.removed = oldest_kept, removed
        self.anonymous = Anonymiser(salt)

    def __call__(self, records: list[dict]) -> list[dict]:
        kept = []
        for record in records:
            if record["timestamp"] >= self.oldest_kept or record["event_type"] in CATALOGUE_ONLY:
                kept.append(record)
                continue
            anonymous = self.anonymous.of(record, keep_links=False)
            if anonymous is not None:
                kept.append(anonymous)
                self.removed["anonymised " + record["event_type"]] += 1
            else:
                self.removed[record["event_type"]] += 1
        return kept


def receipt(config: FeatureStoreConfig, oldest_kept: int, removed: Counter, kept: int, started: float) -> dict:
    return {"retention_days": config.retention_days, "oldest_kept": format_timestamp(oldest_kept),
            "events_removed": sum(removed.values()), "events_removed_by_type": dict(sorted(removed.items())),
            "events_kept": kept, "seconds": round(time.monotonic() - started, 3)}
