"""Each merchant's shoppers and events its own. The ids a merchant sends (event ids, users,
sessions, orders, and the fraud network's cards, devices, emails, IPs and addresses) are kept
under the merchant's name, `<merchant>|<id>`, in the log, the online store (embedded or Redis),
the dedup index and the fraud network alike: two shops sending the same user id or event id
touch two different entries, and one shop's request can only name its own. Products are the
shared catalogue's. Requests without a merchant_id (a single-shop deployment) keep their ids
as they are.

The separator cannot occur in a merchant id (MERCHANT_ID), so `<merchant>|<id>` is never
another merchant's id, whatever the id holds."""
from __future__ import annotations

import re

SEPARATOR = "|"
MERCHANT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
# the payload fields that name a shopper's things (the rest are the catalogue's or text)
SCOPED_PAYLOAD = ("order_id", "card_id", "device_id", "email", "ip", "shipping_address_id", "billing_address_id")
# the context entries that name one (a device seen by a browsing event)
SCOPED_CONTEXT = ("device",)
# the entities whose ids a merchant owns (products are the shared catalogue's)
SCOPED_ENTITIES = frozenset({"user", "session", "card", "device", "address"})


def merchant_problem(merchant: str) -> str | None:
    """Why `merchant` cannot be a merchant id (None: it can; "" is the unnamed shop)."""
    if merchant == "" or MERCHANT_ID.match(merchant):
        return None
    return ("a merchant id is 1-64 letters, digits, '_', '.' or '-' (it names whose data a request "
            "reads and writes)")


def is_scoped(record: dict) -> bool:
    """Whether an event is a named merchant's (its id kept under the merchant's name)."""
    return SEPARATOR in str(record.get("event_id") or "")


def scoped(merchant: str, value: str) -> str:
    """`value` as the merchant's own id ("" stays "": no id)."""
    return f"{merchant}{SEPARATOR}{value}" if merchant and value else value


def unscoped(merchant: str, value: str) -> str:
    """The id the merchant sent, from its scoped form."""
    prefix = f"{merchant}{SEPARATOR}" if merchant else ""
    return value[len(prefix):] if prefix and value.startswith(prefix) else value


def claimed_field(record: dict) -> str | None:
    """The first id of an unnamed shop's event that holds the separator (it would name a
    merchant's own entry), as the field a refusal names; None when none does."""
    for name in ("event_id", "user_id", "session_id"):
        if SEPARATOR in str(record.get(name) or ""):
            return name
    for part, names in (("payload", SCOPED_PAYLOAD), ("context", SCOPED_CONTEXT)):
        entries = record.get(part) or {}
        for name in names:
            if SEPARATOR in str(entries.get(name) or ""):
                return f"{part}.{name}"
    return None


def scope_record(record: dict, merchant: str) -> dict:
    """An event record's ids made the merchant's (in place; returned)."""
    if not merchant:
        return record
    record["event_id"] = scoped(merchant, record["event_id"])
    for name in ("user_id", "session_id"):
        value = record.get(name)
        if value:
            record[name] = scoped(merchant, value)
    payload = record.get("payload")
    if payload:
        for name in SCOPED_PAYLOAD:
            value = payload.get(name)
            if isinstance(value, str) and value:
                payload[name] = scoped(merchant, value)
    context = record.get("context")
    if context:
        if "merchant_id" in context:  # whose event it is, as the batch says: never another's name
            context["merchant_id"] = merchant
        for name in SCOPED_CONTEXT:
            value = context.get(name)
            if isinstance(value, str) and value:
                context[name] = scoped(merchant, value)
    return record
