"""A retention pass (retention.py) in steps, as rebuild_child drives one: `begin` starts the
rebuild of the store from the events within the period, `read` re-applies the log up to a
position, `seal` snapshots the rebuilt store, `close` completes it beside the data directory
for the parent to take on, `state` says how far it got."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from .rebase import Rebuild
from .retention import KeepRecent, mark, receipt
from .store_config import FeatureStoreConfig


class RetentionPass:
    def __init__(self, config: FeatureStoreConfig, oldest_kept: int) -> None:
        self.config, self.oldest_kept = config, oldest_kept
        self.started = time.monotonic()
        self.removed: Counter = Counter()
        self.keep = KeepRecent(oldest_kept, self.removed)
        self.work: Rebuild | None = None

    def begin(self) -> bool:
        self.work = Rebuild.fresh(self.config, Path(self.config.data_dir), self.keep, "trimmed to its retention",
                                  strict=True)
        return True

    def read(self, until: int | None = None) -> int:
        return self.work.read(until)

    def seal(self) -> None:
        self.work.seal()

    def close(self) -> dict:
        mark(self.work.staging, self.oldest_kept)
        self.work.close()
        return receipt(self.config, self.oldest_kept, self.removed, self.work.events, self.started)

    def abandon(self) -> None:
        if self.work is not None:
            self.work.abandon()

    def state(self) -> dict:
        return {"rebuilt": self.work is not None, "removed": dict(self.removed), "position": self.work.position,
                "events": self.work.events, "salt": self.keep.anonymous.salt.hex()}
