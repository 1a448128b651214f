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
is rebuilt without them). Models trained before the erasure keep what they learned until they
are trained again; the receipt says so."""
from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import lock
from .erased import ErasedShoppers
from .pseudonyms import PERSONAL_CONTEXT, store_key
from .events import format_timestamp
from .log import replay_log
from .rebase import Rebuild, swap_in
from .service import FeatureStoreConfig
from .tenancy import scoped


LATER_EVENTS = {"fresh": "start a fresh history",
                "refuse": "refused ([features] erasure_later_events): a keyed digest of the shopper's id is kept "
                          "to recognise them"}
LINK_EVENTS = frozenset({"order", "chargeback"})  # what an erasure may keep as no one's
LINK_CONTEXT = PERSONAL_CONTEXT | {"device", "merchant_id"}  # the context entries such an event keeps


@dataclass
class Shopper:
    """What of one shopper the log holds: their sessions and orders (found in a first pass)."""
    user: str  # as stored: the merchant's scoped id
    sessions: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)
    held: int = 0  # events of theirs (their own user id)
    seen: int = 0  # events in the log

    def note(self, record: dict) -> None:
        """One of their own events: its session and order are theirs."""
        if record.get("session_id"):
            self.sessions.add(record["session_id"])
        order = (record.get("payload") or {}).get("order_id")
        if order:
            self.orders.add(order)

    def anything(self) -> bool:
        return bool(self.held or self.sessions or self.orders)

    def owns(self, record: dict) -> bool:
        user = record.get("user_id")
        if user == self.user:
            return True
        if user:  # another shopper's event
            return False
        if record.get("session_id") in self.sessions:
            return True
        order = (record.get("payload") or {}).get("order_id")
        return order is not None and order in self.orders


def find(data_dirs: list[Path], user: str) -> Shopper:
    """The shopper as the logs of `data_dirs` hold them (several: the replicas of a Redis store,
    whose sessions may have been served by any of them)."""
    shopper = Shopper(user)
    guest_orders: dict[str, set[str]] = {}  # orders placed without a user id, by session
    for _, records in (batch for data_dir in data_dirs for batch in replay_log(Path(data_dir) / "log")):
        shopper.seen += len(records)
        for record in records:
            order = (record.get("payload") or {}).get("order_id")
            if record.get("user_id") == user:
                shopper.held += 1
                shopper.note(record)
            elif order and not record.get("user_id") and record.get("session_id"):
                guest_orders.setdefault(record["session_id"], set()).add(order)
    for session in shopper.sessions:  # an order placed in their session is theirs, and so is its chargeback
        shopper.orders |= guest_orders.get(session, set())
    return shopper


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
    (service_erasure): `begin` finds the shopper and starts the rebuild, `read` re-applies the
    log up to a position (again and again, as it grows), `finish` swaps the rebuilt directory in
    once the server has stopped appending and the rest is read. The caller holds the lock."""

    def __init__(self, config: FeatureStoreConfig, merchant: str, user: str,
                 erased: ErasedShoppers | None = None) -> None:
        if not user:
            raise ValueError("name the shopper to forget (--user)")
        self.config, self.merchant, self.user = config, merchant, user
        self.started = time.monotonic()
        self.removed: Counter = Counter()
        self.shopper = Shopper(scoped(merchant, user))
        self.work: Rebuild | None = None
        self._erased = erased  # a running server's own list (it refuses at once)

    def begin(self) -> bool:
        """Whether the store holds anything of the shopper (else nothing is rebuilt)."""
        data_dir = Path(self.config.data_dir)
        if self.config.erasure_later_events == "refuse":
            erased = self._erased or ErasedShoppers(store_key(self.config.pseudonym_key_file, data_dir), data_dir)
            if not erased.holds(self.shopper.user):
                erased.add(self.shopper.user)
        self.shopper = find([data_dir], self.shopper.user)
        if not self.shopper.anything():
            return False
        self.work = Rebuild(self.config, data_dir, Without(self.shopper, self.config, self.removed), "erased",
                            strict=True)
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


class Without:
    """A batch of the log without the shopper's events (as rebase.rebuild's `change`), or with
    their orders as no one's ([features] erasure_keeps_fraud_links); counts what went in
    `removed`."""

    def __init__(self, shopper: Shopper, config: FeatureStoreConfig, removed: Counter) -> None:
        self.shopper, self.removed = shopper, removed
        self.anonymous = _Anonymiser() if config.erasure_keeps_fraud_links else None

    def __call__(self, records: list[dict]) -> list[dict]:
        kept = []
        for record in records:
            if record.get("user_id") == self.shopper.user:  # events of theirs that came after find()
                self.shopper.note(record)
            if not self.shopper.owns(record):
                kept.append(record)
            elif self.anonymous is not None and record["event_type"] in LINK_EVENTS:
                kept.append(self.anonymous.order(record))
                self.removed["anonymised " + record["event_type"]] += 1
            else:
                self.removed[record["event_type"]] += 1
        return kept


class _Anonymiser:
    """An order or chargeback of the shopper as one of no one: no user or session, a fresh order
    id (the same for an order and its chargeback, from a salt that dies with the erasure)."""

    def __init__(self) -> None:
        self._salt = secrets.token_bytes(16)

    def order(self, record: dict) -> dict:
        payload = dict(record.get("payload") or {})
        if payload.get("order_id"):
            digest = hashlib.sha256(self._salt + str(payload["order_id"]).encode()).hexdigest()[:20]
            payload["order_id"] = f"erased-{digest}"
        payload.pop("items", None)  # what they bought is theirs, not a link
        context = {k: v for k, v in (record.get("context") or {}).items() if k in LINK_CONTEXT}
        return {**record, "user_id": None, "session_id": "", "payload": payload, "context": context}


def receipt(config: FeatureStoreConfig, merchant: str, user: str, removed: Counter, shopper: Shopper,
            kept: int | None, started: float) -> dict:
    out = {"merchant": merchant, "user": user, "erased_at": format_timestamp(int(time.time() * 1000)),
            "events_removed": sum(removed.values()), "events_removed_by_type": dict(sorted(removed.items())),
            "sessions": len(shopper.sessions), "orders": len(shopper.orders),
            "events_kept": kept if kept is not None else shopper.seen, "seconds": round(time.monotonic() - started, 3),
            "rewritten": ["event log", "snapshots", "online store", "dedup index", "fraud network"] if kept is not None
            else [], "fraud_network": "no anonymous links kept: the links were the shopper's orders, removed",
            "later_events": LATER_EVENTS[config.erasure_later_events],
            "models": "trained before this erasure: they keep what they learned until trained again"}
    if config.erasure_keeps_fraud_links and kept is not None:
        out["fraud_network"] = ("anonymous links kept ([features] erasure_keeps_fraud_links): the shopper's orders "
                                "and chargebacks stay as orders of no one, with their card, device, email and "
                                "address pseudonyms and amounts, and no user, session or order id of theirs")
    return out
