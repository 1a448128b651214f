"""The feature store's options ([features] in a TOML file)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FeatureStoreConfig:
    data_dir: Path = field(default_factory=lambda: Path("hanzo_data"))
    fsync: str = "always"  # always | interval | never
    # events older than this behind the store's clock are refused, so every event that counts
    # is deduplicated (>= the short windows; the 90-day and lifetime features take what arrives)
    dedup_horizon_hours: float = 31 * 24
    max_future_seconds: float = 300.0  # events stamped further ahead of the wall clock are rejected
    max_batch_events: int = 10_000
    snapshot_every_events: int = 1_000_000
    # > 0: drop log segments older than this once a snapshot covers them, keeping what they did
    # to the store (disk space only: erasure and retention_days need the whole log, and are
    # then not possible)
    log_retention_days: float = 0.0
    # Events older than this (by the store's clock) leave the log, the snapshots and the online
    # store (features/retention.py), once the log's oldest is retention_every_days past it; 0: kept.
    retention_days: float = 400.0
    retention_every_days: float = 7.0
    catalog: Path | None = None  # catalog.jsonl loaded at start (catalog_update events extend it)
    backend: str = "embedded"  # embedded | redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    # expiry in Redis of latest values, and of the sequences and spans of entities that are
    # forgotten anyway (sessions, cards, devices); a user's and a product's are kept
    redis_ttl_days: float = 35.0
    replica: str = ""  # this server's name in Redis (its log's replay position); default: the data dir
    # The key that pseudonymises personal data (features/pseudonyms.py); empty: pseudonym.key in
    # data_dir (embedded), or one shared through Redis (redis).
    pseudonym_key_file: str = ""
    # Erasure (features/erasure.py): keep the shopper's orders as orders of no one, so the fraud
    # network keeps its anonymous links (a card and an email used together); off: they go.
    erasure_keeps_fraud_links: bool = False
    # An erased shopper's later events: "fresh" starts a new history, "refuse" rejects them
    # (a keyed digest of the shopper's id is kept to recognise them: features/erased.py).
    erasure_later_events: str = "fresh"

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.backend not in ("embedded", "redis"):
            raise ValueError(f"backend must be embedded or redis, not {self.backend!r}")
        if self.retention_days < 0 or self.retention_every_days <= 0:
            raise ValueError("retention_days must be >= 0 and retention_every_days > 0")
        if self.erasure_later_events not in ("fresh", "refuse"):
            raise ValueError(f"erasure_later_events must be fresh or refuse, not {self.erasure_later_events!r}")
        if self.catalog is not None:
            self.catalog = Path(self.catalog)
