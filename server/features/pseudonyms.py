"""Personal data never kept in the clear: emails, IPs, card ids and addresses are replaced by a
keyed HMAC (SHA-256) as an event is taken in, so the log, the snapshots, the online store and
the fraud network hold pseudonyms only. The fraud features need nothing else: they count, join
and compare these values, never read them. A request naming one (GetFeatures of a card,
ScoreFraud's order) has it replaced the same way before anything is looked up.

The key is 32 random bytes: `pseudonym.key` in the data directory (mode 0600), made at the
store's first open; in Redis mode, shared by every replica through Redis unless a key file is
configured. Without the key a pseudonym cannot be turned back into the value, nor can a guessed
value be checked against it. A value that already is a pseudonym (an order the server recorded
itself) is kept as it is."""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PERSONAL_FIELDS = ("email", "ip", "card_id", "shipping_address_id", "billing_address_id")
# the same data under the names a caller's context map may give it
PERSONAL_CONTEXT = frozenset(PERSONAL_FIELDS) | {"ip_address", "email_address", "phone", "card", "address"}
# the entities whose ids are personal data, and the field each is read from
PERSONAL_ENTITIES = frozenset({"card", "address"})
PREFIX = "h:"
DIGEST_CHARS = 32  # 128 bits of the HMAC
KEY_FILE = "pseudonym.key"
REDIS_KEY = "hanzo:pseudonym_key"
_HEX = frozenset("0123456789abcdef")


def is_pseudonym(value: str) -> bool:
    return len(value) == len(PREFIX) + DIGEST_CHARS and value.startswith(PREFIX) and set(value[2:]) <= _HEX


class Pseudonyms:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a pseudonym key is at least 16 bytes")
        self._key = key

    def of(self, value: str) -> str:
        if not value or is_pseudonym(value):
            return value
        digest = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return PREFIX + digest[:DIGEST_CHARS]

    def record(self, record: dict) -> dict:
        """An event record's personal payload fields replaced (in place; returned)."""
        payload = record.get("payload")
        if payload:
            for name in PERSONAL_FIELDS:
                value = payload.get(name)
                if isinstance(value, str) and value:
                    payload[name] = self.of(value)
        self.context(record.get("context"))
        return record

    def context(self, context: dict | None) -> None:
        """A context map's personal entries replaced (in place)."""
        if context:
            for name in PERSONAL_CONTEXT.intersection(context):
                if isinstance(context[name], str):
                    context[name] = self.of(context[name])

    def fields(self, obj: Any) -> Any:
        """The personal fields of an object that has them as attributes (an order; in place)."""
        for name in PERSONAL_FIELDS:
            value = getattr(obj, name, None)
            if isinstance(value, str) and value:
                setattr(obj, name, self.of(value))
        self.context(getattr(obj, "context", None))
        return obj


def key_from_file(path: Path, create: bool = True) -> bytes:
    """The key in `path`, made (random, mode 0600, synced) when there is none and `create`."""
    path = Path(path)
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        key = secrets.token_bytes(32)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        log.info("pseudonym key made", extra={"path": str(path)})
    if len(key) < 16:
        raise ValueError(f"{path}: a pseudonym key is at least 16 bytes, this file holds {len(key)}")
    return key


def key_from_redis(client: Any) -> bytes:
    """The replicas' shared key in Redis, made by whichever replica comes first."""
    client.set(REDIS_KEY, secrets.token_bytes(32), nx=True)
    key = client.get(REDIS_KEY)
    if not key or len(key) < 16:
        raise ValueError(f"Redis holds no usable pseudonym key at {REDIS_KEY}")
    return bytes(key)


def store_key(key_file: str, data_dir: Path, redis: Any = None) -> bytes:
    """A store's key: the configured file (which must exist), else Redis's shared one in Redis
    mode, else the data directory's own (made at the first open)."""
    if key_file:
        try:
            return key_from_file(Path(key_file), create=False)
        except OSError as exc:
            raise ValueError(f"[features] pseudonym_key_file {key_file}: {exc.strerror or exc}") from None
    if redis is not None:
        return key_from_redis(redis)
    return key_from_file(Path(data_dir) / KEY_FILE)
