"""Events as records: the canonical JSONL event (../shared/data/README.md) with its timestamp
held as integer milliseconds since the epoch (UTC). Conversions from JSON objects and from
`hanzo.v1.Event` messages, and the validation every ingestion path applies."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from ..models.errors import quote, too_long
from ..models.limits import DEFAULT_LIMITS, FieldLimits

EVENT_TYPES = (
    "page_view", "product_view", "add_to_cart", "purchase", "search", "recommendation_shown",
    "recommendation_clicked", "order", "chargeback", "catalog_update", "stock_update", "price_change",
)
TYPE_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}

# Browsing events belong to a session; the others (orders, catalog and stock feeds) may not.
SESSION_TYPES = frozenset({"page_view", "product_view", "add_to_cart", "purchase", "search",
                           "recommendation_shown", "recommendation_clicked"})

# payload fields each event type must carry (cdnow's purchases carry an amount, no product).
REQUIRED = {
    "product_view": ("product_id",),
    "add_to_cart": ("product_id",),
    "search": ("query",),
    "recommendation_clicked": ("product_id",),
    "order": ("order_id",),
    "chargeback": ("order_id",),
    "catalog_update": ("product_id",),
    "stock_update": ("product_id", "quantity"),
    "price_change": ("product_id", "price"),
}
NUMBER_FIELDS = frozenset({"quantity", "price", "amount", "cost", "stock"})
NON_NEGATIVE = frozenset({"price", "amount", "cost"})
STRING_FIELDS = frozenset({"product_id", "query", "order_id", "currency", "card_id", "device_id", "ip", "email",
                           "shipping_address_id", "billing_address_id", "location", "title", "description",
                           "request_id", "model_version", "placement", "arm", "experiment"})

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ID_ROOM = 16  # for the prefixes of ids the server derives
MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last moment RFC 3339 can write
# payload strings that are ids (the id limit); the other strings are text
ID_FIELDS = frozenset({"product_id", "order_id", "currency", "card_id", "device_id", "ip", "email",
                       "shipping_address_id", "billing_address_id", "location", "request_id", "model_version",
                       "placement", "arm", "experiment"})


class EventError(ValueError):
    """A malformed event: `field` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_timestamp(value: str) -> int:
    """RFC 3339 -> milliseconds since the epoch. A time without a zone is taken as UTC."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_timestamp(ms: int) -> str:
    """Milliseconds since the epoch -> RFC 3339, UTC, millisecond precision."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    # the year by hand: strftime's %Y writes year 1 as "1", not RFC 3339's "0001"
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def record_from_json(obj: dict[str, Any]) -> dict[str, Any]:
    """A canonical JSON event -> a record (timestamp in ms). Raises EventError."""
    if not isinstance(obj, dict):
        raise EventError("event", f"must be an object, not {type(obj).__name__}")
    stamp = obj.get("timestamp")
    if not isinstance(stamp, str) or not stamp:
        raise EventError("timestamp", "missing (RFC 3339 string expected)")
    try:
        ts = parse_timestamp(stamp)
    except ValueError:
        raise EventError("timestamp", f"{quote(stamp)} is not RFC 3339") from None
    payload = obj.get("payload") or {}
    context = obj.get("context") or {}
    if not isinstance(payload, dict):
        raise EventError("payload", "must be an object")
    if not isinstance(context, dict):
        raise EventError("context", "must be an object")
    return {"event_id": obj.get("event_id"), "event_type": obj.get("event_type"), "timestamp": ts,
            "user_id": obj.get("user_id"), "session_id": obj.get("session_id") or "", "payload": payload,
            "context": context}


def record_to_json(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "timestamp": format_timestamp(record["timestamp"])}


_CONTAINERS = frozenset({"items", "signals", "attributes", "product_ids", "category"})


def record_from_proto(event) -> dict[str, Any]:
    """A `hanzo.v1.Event` -> a record, reading only the fields that are present."""
    payload: dict[str, Any] = {}
    for field, value in event.payload.ListFields():
        name = field.name
        if name in _CONTAINERS:
            if name == "items":
                value = [{"product_id": i.product_id, "quantity": i.quantity, "price": i.price} for i in value]
            elif name in ("signals", "attributes"):
                value = dict(value)
            else:
                value = list(value)
        payload[name] = value
    stamp = event.timestamp
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "timestamp": stamp.seconds * 1000 + stamp.nanos // 1_000_000 if event.HasField("timestamp") else None,
        "user_id": event.user_id if event.HasField("user_id") else None,
        "session_id": event.session_id,
        "payload": payload,
        "context": dict(event.context) if event.context else {},
    }


def record_to_proto(record: dict[str, Any], event) -> None:
    """Fill a `hanzo.v1.Event` from a record (for clients and tests)."""
    event.event_id = record["event_id"]
    event.event_type = record["event_type"]
    event.timestamp.FromMilliseconds(record["timestamp"])
    if record.get("user_id") is not None:
        event.user_id = record["user_id"]
    event.session_id = record.get("session_id") or ""
    payload = event.payload
    for name, value in (record.get("payload") or {}).items():
        if value is None:
            continue
        if name == "items":
            for item in value:
                payload.items.add(product_id=str(item.get("product_id", "")), quantity=float(item.get("quantity", 0)),
                                  price=float(item.get("price", 0)))
        elif name in ("signals", "attributes"):
            getattr(payload, name).update({k: (v if name == "signals" else str(v)) for k, v in value.items()})
        elif name in ("product_ids", "category"):
            getattr(payload, name).extend(str(v) for v in value)
        elif name in NUMBER_FIELDS:
            setattr(payload, name, float(value))
        elif name == "position":
            payload.position = int(value)
        else:
            setattr(payload, name, str(value))
    for key, value in (record.get("context") or {}).items():
        event.context[key] = str(value)


def check_record(record: dict[str, Any], max_future_ms: int, now_ms: int,
                 limits: FieldLimits = DEFAULT_LIMITS) -> None:
    """Raise EventError for a record that must not enter the log."""
    event_id = record.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise EventError("event_id", "missing")
    _check_sizes(record, limits)
    kind = record.get("event_type")
    if kind not in TYPE_CODE:
        raise EventError("event_type", f"{quote(kind)} is not one of {', '.join(EVENT_TYPES)}")
    ts = record.get("timestamp")
    if ts is None:
        raise EventError("timestamp", "missing")
    if ts > MAX_TIMESTAMP_MS:
        raise EventError("timestamp", "after 9999-12-31")
    if ts > now_ms + max_future_ms:
        raise EventError("timestamp", f"{format_timestamp(ts)} is more than {max_future_ms // 1000} s ahead of "
                                      f"the server's clock ({format_timestamp(now_ms)})")
    if ts < 0:
        raise EventError("timestamp", "before 1970")
    user = record.get("user_id")
    if user is not None and not isinstance(user, str):
        raise EventError("user_id", "must be a string or null")
    if kind in SESSION_TYPES and not record.get("session_id"):
        raise EventError("session_id", f"missing (a {kind} event belongs to a session)")
    payload = record["payload"]
    for name in REQUIRED.get(kind, ()):
        if payload.get(name) in (None, ""):
            raise EventError(f"payload.{name}", f"missing (a {kind} event needs it)")
    if kind == "purchase" and payload.get("product_id") in (None, "") and payload.get("amount") is None:
        raise EventError("payload.product_id", "missing (a purchase needs a product_id or an amount)")
    for name, value in payload.items():
        if value is None:
            continue
        if name in NUMBER_FIELDS:
            if value.__class__ is not float and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise EventError(f"payload.{name}", f"{value!r} is not a finite number")
            if not math.isfinite(value):
                raise EventError(f"payload.{name}", f"{value!r} is not a finite number")
            if value < 0 and name in NON_NEGATIVE:
                raise EventError(f"payload.{name}", f"{value!r} is negative")
        elif name in STRING_FIELDS and value.__class__ is not str:
            raise EventError(f"payload.{name}", f"{value!r} is not a string")
    if kind == "purchase" and (payload.get("quantity") or 1) <= 0:
        raise EventError("payload.quantity", f"{payload['quantity']!r}: a purchase needs a positive quantity")
    if kind == "purchase" and payload.get("amount") is None and payload.get("price") is not None \
            and not math.isfinite(payload["price"] * (payload.get("quantity") or 1.0)):
        # the amount the store reads is price x quantity: it must be a number too
        raise EventError("payload.price", "price x quantity is not a finite number")


def _check_sizes(record: dict[str, Any], limits: FieldLimits) -> None:
    """Ids, texts, lists and maps of one event within [limits], so a 5 MiB id is one reject
    and never a key in the store or a line in the log."""
    # The server derives ids and context from a caller's (order-<merchant>/<order_id>,
    # shown-<request_id>, five fraud context keys): the events it writes itself get that room.
    ids, texts = 2 * limits.max_id_chars + ID_ROOM, limits.max_text_chars
    for name in ("event_id", "event_type", "user_id", "session_id"):
        value = record.get(name)
        if value.__class__ is str and len(value) > ids:
            raise EventError(name, too_long(value, ids))
    payload = record["payload"]
    for name, value in payload.items():
        if value.__class__ is str:
            limit = ids if name in ID_FIELDS else texts
            if len(value) > limit:
                raise EventError(f"payload.{name}", too_long(value, limit))
        elif isinstance(value, (list, dict)):
            limit = limits.max_map_entries if isinstance(value, dict) else limits.max_repeated
            if len(value) > limit:
                raise EventError(f"payload.{name}", f"{len(value)} entries; the limit is {limit}")
            if name == "items" and any(len(str(i.get("product_id", ""))) > ids for i in value if isinstance(i, dict)):
                raise EventError("payload.items", f"a product_id is over the limit of {ids} characters")
            if name in ("product_ids", "category") and any(len(str(v)) > ids for v in value):
                raise EventError(f"payload.{name}", f"an element is over the limit of {ids} characters")
            if isinstance(value, dict):
                _check_map(f"payload.{name}", value, ids, texts)
    context = record.get("context") or {}
    if len(context) > limits.max_map_entries + ID_ROOM:
        raise EventError("context", f"{len(context)} entries; the limit is {limits.max_map_entries + ID_ROOM}")
    _check_map("context", context, ids, texts)


def _check_map(field: str, entries: dict, ids: int, texts: int) -> None:
    if any(len(str(k)) > ids or len(str(v)) > texts for k, v in entries.items()):
        raise EventError(field, f"a key over {ids} or a value over {texts} characters")
