"""Retention: events older than `[features] retention_days` (by the store's clock, event time)
leave the event log, the snapshots and the online store, so a shopper who has not come back in
that long is no longer held at all, and nobody's old history is. The store is rebuilt from the
events within the period, as an erasure rebuilds it (rebase.Rebuild; from a running server, by
the same low-priority child and the same short last stretch), once the log's oldest event is
`retention_every_days` past the period (the last pass's cutoff is kept in MARK_FILE): so
nothing is held longer than the sum of the two. With log_retention_days (segments dropped) the
log cannot be rebuilt, and no pass runs.

Kept past the period, because they are the shop's and not a shopper's: the catalogue's own
events (catalog_update, price_change, stock_update) as they are, and the unnamed shop's
purchases reduced to the stock they moved (erasure_records.Anonymiser.purchase), so the
catalogue's products, prices and stock come out of the rebuild as they went in."""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from .erasure_records import Anonymiser
from .events import format_timestamp
from .log import replay_log
from .log_frames import LogDamaged
from .store_config import FeatureStoreConfig

DAY_MS = 86_400_000
MARK_FILE = "retention.json"
CATALOGUE_ONLY = frozenset({"catalog_update", "price_change", "stock_update"})


def cutoff(config: FeatureStoreConfig, watermark: int) -> int:
    """The oldest event time kept (ms)."""
    return watermark - int(config.retention_days * DAY_MS)


def retained_since(data_dir: Path) -> int | None:
    """What the store holds back to: the last pass's oldest event kept (MARK_FILE, written with
    the rebuilt directory), or before any pass the oldest event of a shopper in the log's first
    segment (the log is in arrival order, so later segments may hold older ones: the pass finds
    every one; this only says when one is due). None: nothing to go. Reads files: for a thread."""
    try:
        return int(json.loads((Path(data_dir) / MARK_FILE).read_text())["oldest_kept"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    try:
        for _, records in replay_log(Path(data_dir) / "log"):
            stamps = [r["timestamp"] for r in records if r["event_type"] not in CATALOGUE_ONLY
                      and not (r["event_type"] == "purchase" and r.get("user_id") is None)]
            if stamps:
                return min(stamps)
    except (OSError, LogDamaged):  # a log that cannot be read is the open's to report, not this
        return None
    return None


def due(config: FeatureStoreConfig, since: int | None, watermark: int) -> bool:
    """Whether a pass is due, the store holding events back to `since` (retained_since)."""
    if config.retention_days <= 0 or config.log_retention_days > 0 or since is None:
        return False
    return since < cutoff(config, watermark) - int(config.retention_every_days * DAY_MS)


def mark(staging: Path, oldest_kept: int) -> None:
    """Written into the rebuilt directory before it is swapped in."""
    (Path(staging) / MARK_FILE).write_text(json.dumps({"oldest_kept": oldest_kept,
                                                       "oldest_kept_at": format_timestamp(oldest_kept)}))


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
            self.anonymous.leave(record, False, kept, self.removed)
        return kept


def receipt(config: FeatureStoreConfig, oldest_kept: int, removed: Counter, kept: int, started: float) -> dict:
    return {"retention_days": config.retention_days, "oldest_kept": format_timestamp(oldest_kept),
            "events_removed": sum(removed.values()), "events_removed_by_type": dict(sorted(removed.items())),
            "events_kept": kept, "seconds": round(time.monotonic() - started, 3)}
