"""What of the event log is one shopper's, for an erasure (erasure.py): their own events, the
anonymous events of their sessions, and the orders placed in those sessions with their
chargebacks (find, Shopper); a batch of the log without them (Without), or with their orders
kept as orders of no one ([features] erasure_keeps_fraud_links); and the receipt."""
from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .events import format_timestamp
from .log import replay_log
from .pseudonyms import PERSONAL_CONTEXT, PERSONAL_FIELDS
from .store_config import FeatureStoreConfig
from .tenancy import is_scoped

LATER_EVENTS = {"fresh": "start a fresh history",
                "refuse": "refused ([features] erasure_later_events): a keyed digest of the shopper's id is kept "
                          "to recognise them"}
LINK_EVENTS = frozenset({"order", "chargeback"})  # what an erasure may keep as no one's
LINK_CONTEXT = PERSONAL_CONTEXT | {"device", "merchant_id"}  # the context entries such an event keeps
LINK_PAYLOAD = frozenset(PERSONAL_FIELDS) | {"order_id", "device_id", "amount", "currency"}  # and payload fields


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


class Without:
    """A batch of the log without the shopper's events (as rebase.rebuild's `change`), or with
    their orders as no one's ([features] erasure_keeps_fraud_links); counts what went in
    `removed`. The unnamed shop's purchases stay as no one's whatever the setting: they moved
    the shared catalogue's stock, which is the shop's, not the shopper's."""

    def __init__(self, shopper: Shopper, config: FeatureStoreConfig, removed: Counter, salt: bytes = b"") -> None:
        self.shopper, self.removed = shopper, removed
        self.anonymous = Anonymiser(salt)
        self.keep_links = config.erasure_keeps_fraud_links

    def salt(self) -> bytes:
        return self.anonymous.salt

    def __call__(self, records: list[dict]) -> list[dict]:
        kept = []
        for record in records:
            if record.get("user_id") == self.shopper.user:  # events of theirs that came after find()
                self.shopper.note(record)
            if not self.shopper.owns(record):
                kept.append(record)
                continue
            self.anonymous.leave(record, self.keep_links, kept, self.removed)
        return kept


class Anonymiser:
    """An event of a shopper as one of no one, where what it records is not theirs alone: an
    order or chargeback (a link of the fraud network, when links are kept) with no user or
    session and a fresh order id (the same for an order and its chargeback, from a salt that
    dies with the job), or an unnamed shop's purchase reduced to the stock it moved."""

    def __init__(self, salt: bytes = b"") -> None:
        self.salt = salt or secrets.token_bytes(16)

    def leave(self, record: dict, keep_links: bool, kept: list[dict], removed: Counter) -> None:
        """`record` leaves the log: what is kept of it (`of`) goes into `kept`, and `removed`
        counts it."""
        anonymous = self.of(record, keep_links)
        if anonymous is not None:
            kept.append(anonymous)
            removed["anonymised " + record["event_type"]] += 1
        else:
            removed[record["event_type"]] += 1

    def of(self, record: dict, keep_links: bool) -> dict | None:
        """The anonymous event, or None where nothing of it is kept."""
        if keep_links and record["event_type"] in LINK_EVENTS:
            return self.order(record)
        if record["event_type"] == "purchase" and not is_scoped(record) and (record.get("payload") or {}).get(
                "product_id"):
            return self.purchase(record)
        return None

    def _id(self, value: str) -> str:
        return "erased-" + hashlib.sha256(self.salt + value.encode("utf-8", "surrogatepass")).hexdigest()[:20]

    def order(self, record: dict) -> dict:
        """Only what links: the payload's pseudonyms, device and amount (never the items, what
        they bought, nor any other field a caller may have sent)."""
        payload = {k: v for k, v in (record.get("payload") or {}).items() if k in LINK_PAYLOAD}
        if payload.get("order_id"):
            payload["order_id"] = self._id(str(payload["order_id"]))
        context = {k: v for k, v in (record.get("context") or {}).items() if k in LINK_CONTEXT}
        return {"event_id": self._id(str(record["event_id"])), "event_type": record["event_type"],
                "timestamp": record["timestamp"], "user_id": None, "session_id": "", "payload": payload,
                "context": context}

    def purchase(self, record: dict) -> dict:
        payload = record["payload"]
        stock = {k: payload[k] for k in ("product_id", "quantity") if payload.get(k) is not None}
        location = (record.get("context") or {}).get("location")
        return {"event_id": self._id(str(record["event_id"])), "event_type": "purchase",
                "timestamp": record["timestamp"], "user_id": None,
                "session_id": self._id(str(record.get("session_id") or "")),  # a purchase belongs to a session
                "payload": stock, "context": {"location": location} if location else {}}


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
