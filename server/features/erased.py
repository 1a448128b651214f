"""The shoppers erased under `[features] erasure_later_events = "refuse"`, whose later events
are refused. Refusing a shopper needs something that recognises them: a keyed digest of their
scoped id, under a key derived from the pseudonym key (so it matches none of their pseudonyms
and, without the key, no guessed id can be checked against it). Under "fresh" (the default)
nothing is kept and a later event starts a new history.

Kept in `erased.list` in the data directory (a digest a line, appended and synced before the
erasure starts: a crash leaves the shopper refused, never forgotten and taken back), or in
Redis (`hanzo:erased`, outside the store's prefix, which a Redis erasure empties) for
replicas, read at each replica's start (a Redis erasure runs with every replica stopped)."""
from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

LIST_FILE = "erased.list"
REDIS_KEY = "hanzo:erased"
_DIGEST_CHARS = 32


class ErasedShoppers:
    def __init__(self, pseudonym_key: bytes, data_dir: Path, redis: Any = None) -> None:
        self._key = hashlib.sha256(b"hanzo erased shoppers\0" + pseudonym_key).digest()
        self._path = Path(data_dir) / LIST_FILE
        self._redis = redis
        self._digests = self._load()

    def __len__(self) -> int:
        return len(self._digests)

    def digest(self, user: str) -> str:
        return hmac.new(self._key, user.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:_DIGEST_CHARS]

    def holds(self, user: str | None) -> bool:
        return bool(user) and bool(self._digests) and self.digest(user) in self._digests

    def add(self, user: str) -> None:
        """`user` (the scoped id) refused from now on; durable when this returns."""
        digest = self.digest(user)
        if self._redis is not None:
            self._redis.sadd(REDIS_KEY, digest)
        else:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, ("\n" + digest + "\n").encode())  # a line of its own after a torn one
                os.fsync(fd)
            finally:
                os.close(fd)
        self._digests.add(digest)

    def moved_to(self, data_dir: Path) -> None:
        """Its directory was renamed (an erasure's swap)."""
        self._path = Path(data_dir) / LIST_FILE

    def _load(self) -> set[str]:
        if self._redis is not None:
            return {m.decode() if isinstance(m, bytes) else m for m in self._redis.smembers(REDIS_KEY)}
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return set()
        return {line for line in text.split("\n") if len(line) == _DIGEST_CHARS}  # a torn last line is no digest
