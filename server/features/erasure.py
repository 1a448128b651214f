"""A shopper erased on request: every event of theirs (their own, the anonymous events of their
sessions, the served logs and chargebacks that name them or their orders) leaves the event
log, and the snapshots, the online store, the dedup index and the fraud network are rebuilt
from what remains, so no byte of the old files survives (rebase.rebuild swaps in a fresh data
directory). The receipt says what went.

The fraud network keeps no link through the shopper: the links were their orders, and their
orders are gone; other shoppers' orders that used the same card keep theirs. With
[features] erasure_keeps_fraud_links the orders stay as orders of no one instead (their
card, device, email and address pseudonyms and amounts: anonymous links). Events for the
shopper that arrive later start a fresh history (their ids are free again: the dedup index
is rebuilt without them), or are refused ([features] erasure_later_events, erased.py). Models trained before the erasure keep what they learned until they
are trained again; the receipt says so."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from . import lock
from .erased import ErasedShoppers
from .erasure_records import Shopper, Without, find, receipt
from .pseudonyms import store_key
from .rebase import Rebuild, swap_in
from .service import FeatureStoreConfig
from .tenancy import scoped


def forget(config: FeatureStoreConfig, merchant: str, user: str) -> dict:
    """Erase `user` of `merchant` ("" for the unnamed shop) from the store at config.data_dir
    (no server may hold it); returns the receipt."""
    erasure = Erasure(config, merchant, user)
    lock.acquire(config.data_dir, "erasure")
    try:
        if erasure.begin():
            try:
                erasure.read()
            except BaseException:
                erasure.abandon()
                raise
        return erasure.finish()
    finally:
        lock.release(config.data_dir)


class Erasure:
    """forget() in steps, for a running server that goes on taking events meanwhile
    (service_rebuilds): `begin` finds the shopper and starts the rebuild, `read` re-applies the
    log up to a position (again and again, as it grows), `finish` swaps the rebuilt directory in
    once the server has stopped appending and the rest is read. The caller holds the lock."""

    def __init__(self, config: FeatureStoreConfig, merchant: str, user: str) -> None:
        if not user:
            raise ValueError("name the shopper to forget (--user)")
        self.config, self.merchant, self.user = config, merchant, user
        self.started = time.monotonic()
        self.removed: Counter = Counter()
        self.shopper = Shopper(scoped(merchant, user))
        self.work: Rebuild | None = None
        self.without: Without | None = None

    def begin(self) -> bool:
        """Whether the store holds anything of the shopper (else nothing is rebuilt)."""
        data_dir = Path(self.config.data_dir)
        if self.config.erasure_later_events == "refuse":
            # (a running server has added them to its own list already: service_rebuilds)
            erased = ErasedShoppers(store_key(self.config.pseudonym_key_file, data_dir), data_dir)
            if not erased.holds(self.shopper.user):
                erased.add(self.shopper.user)
        self.shopper = find([data_dir], self.shopper.user)
        if not self.shopper.anything():
            return False
        self.without = Without(self.shopper, self.config, self.removed)
        self.work = Rebuild.fresh(self.config, data_dir, self.without, "erased", strict=True)
        return True

    def read(self, until: int | None = None) -> int:
        return self.work.read(until) if self.work is not None else 0

    def seal(self) -> None:
        if self.work is not None:
            self.work.seal()

    def finish(self) -> dict:
        out = self.close()
        if self.work is not None:
            swap_in(self.config.data_dir)
        return out

    def close(self) -> dict:
        """The rebuilt directory complete, not swapped in yet (rebase.swap_in); the receipt."""
        if self.work is not None:
            self.work.close()
        kept = self.work.events if self.work is not None else None
        return receipt(self.config, self.merchant, self.user, self.removed, self.shopper, kept, self.started)

    def abandon(self) -> None:
        if self.work is not None:
            self.work.abandon()

    def state(self) -> dict:
        """Where the rebuild stands, for whoever takes it on (erasure_child): what was found of
        the shopper, what went, how far the log was read, and the anonymiser's salt."""
        shopper = self.shopper
        return {"rebuilt": self.work is not None, "user": shopper.user, "sessions": sorted(shopper.sessions), "orders": sorted(shopper.orders),
                "held": shopper.held, "seen": shopper.seen, "removed": dict(self.removed),
                "position": self.work.position if self.work is not None else 0,
                "events": self.work.events if self.work is not None else 0,
                "salt": self.without.salt().hex() if self.without is not None else ""}
