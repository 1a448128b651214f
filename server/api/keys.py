"""The credentials a gateway holds: API keys (kept as SHA-256 digests, never the keys) and, under
mutual TLS, client-certificate identities that stand for a key. Each is bound to scopes and to
the merchants it acts for (`*`: any).

The file is JSON, written by `hanzo keys add | revoke | list`; the server reads it again when it
changes, so credentials are added and revoked without a restart. A file that stops parsing keeps
the credentials last read, and says so."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)

SCOPES = ("decide", "ingest", "infer", "admin", "metrics")  # metrics: the metrics page only
ANY_MERCHANT = "*"


@dataclass(frozen=True)
class ApiKey:
    id: str
    sha256: str  # "" for an identity-bound credential
    scopes: tuple[str, ...]
    merchants: tuple[str, ...] = (ANY_MERCHANT,)
    # a client certificate's common name or subject alternative name (mutual TLS only)
    identity: str = ""

    def acts_for(self, merchant: str) -> bool:
        return ANY_MERCHANT in self.merchants or merchant in self.merchants

    def entry(self) -> dict:
        out = {"id": self.id, "scopes": list(self.scopes), "merchants": list(self.merchants)}
        out.update({"identity": self.identity} if self.identity else {"sha256": self.sha256})
        return out


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyFile:
    """The keys file: read, and written whole (a temporary file renamed over it, mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def entries(self) -> list[ApiKey]:
        """Every credential; ValueError naming the file and what is wrong."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:  # a directory, unreadable: said, never a crash
            raise ValueError(f"{self.path}: cannot be read ({type(exc).__name__}: {exc})") from None
        try:
            keys = [ApiKey(str(e["id"]), str(e.get("sha256", "")), tuple(map(str, e["scopes"])),
                           tuple(map(str, e.get("merchants", ["*"]))), str(e.get("identity", "")))
                    for e in json.loads(text)["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{self.path}: not a keys file ({type(exc).__name__}: {exc})") from None
        for key in keys:
            unknown = set(key.scopes) - set(SCOPES)
            if unknown:
                raise ValueError(f"{self.path}: key {key.id!r} has unknown scopes {sorted(unknown)} "
                                 f"(scopes: {', '.join(SCOPES)})")
            if bool(key.sha256) == bool(key.identity):
                raise ValueError(f"{self.path}: key {key.id!r} needs exactly one of sha256 and identity")
        return keys

    def write(self, keys: list[ApiKey]) -> None:
        # a fresh file of our own (O_EXCL, mode 0600, never a link someone left in the way)
        fd, staging = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent or ".")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"keys": [k.entry() for k in keys]}, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(staging, self.path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """One change at a time: two `hanzo keys` at once would each write what it read, and a
        revoked key could come back."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def add(self, scopes: list[str], merchants: list[str], name: str = "",
            identity: str = "") -> tuple[ApiKey, str]:
        """A new credential: (its entry, the key itself, shown once; "" for an identity)."""
        unknown = set(scopes) - set(SCOPES)
        if unknown or not scopes:
            raise ValueError(f"scopes must be some of {', '.join(SCOPES)}, not {', '.join(scopes) or 'none'}")
        with self._changing():
            return self._add(scopes, merchants, name, identity)

    def _add(self, scopes: list[str], merchants: list[str], name: str, identity: str) -> tuple[ApiKey, str]:
        keys = self.entries()
        name = name or f"key-{secrets.token_hex(4)}"
        if any(k.id == name for k in keys):
            raise ValueError(f"{self.path} already holds a key named {name!r}")
        if identity and any(k.identity == identity for k in keys):
            raise ValueError(f"{self.path} already binds the identity {identity!r}")
        secret = "" if identity else "hz_" + secrets.token_urlsafe(32)
        entry = ApiKey(name, digest(secret) if secret else "", tuple(scopes), tuple(merchants or [ANY_MERCHANT]),
                       identity)
        self.write(keys + [entry])
        return entry, secret

    def revoke(self, name: str) -> None:
        with self._changing():
            self._revoke(name)

    def _revoke(self, name: str) -> None:
        keys = self.entries()
        if not any(k.id == name for k in keys):
            raise ValueError(f"{self.path} holds no key named {name!r} (keys: {', '.join(k.id for k in keys)})")
        self.write([k for k in keys if k.id != name])


@dataclass
class KeyStore:
    """The credentials the server checks against, read again when the file changes (at most
    once a `recheck_s`); `on_change(before, after)` hears of each change (the audit log)."""
    file: KeyFile
    recheck_s: float = 1.0
    on_change: Callable[[list[ApiKey], list[ApiKey]], None] | None = None
    keys: dict[str, ApiKey] = field(default_factory=dict)
    identities: dict[str, ApiKey] = field(default_factory=dict)
    _seen: tuple = ()
    _checked: float = 0.0

    def __post_init__(self) -> None:
        self._take(self.file.entries())  # a bad file at start stops the start
        self._seen = self._stamp()

    def _take(self, entries: list[ApiKey]) -> None:
        self.keys = {k.sha256: k for k in entries if k.sha256}
        self.identities = {k.identity: k for k in entries if k.identity}

    def _stamp(self) -> tuple:
        try:
            st = self.file.path.stat()
            return st.st_mtime_ns, st.st_size, st.st_ino
        except FileNotFoundError:
            return ()
        except OSError as exc:  # unreadable: a stamp of its own, so the read says why
            return (type(exc).__name__,)

    def _recheck(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.recheck_s:
            return
        self._checked = now
        stamp = self._stamp()
        if stamp == self._seen:
            return
        self._seen = stamp
        before = list(self.keys.values()) + list(self.identities.values())
        try:
            self._take(self.file.entries())
        except ValueError as exc:
            log.error("API keys file no longer reads; the keys read before stay in force",
                      extra={"error": str(exc)[:300]})
            return
        log.info("API keys read again", extra={"keys": len(self.keys), "identities": len(self.identities)})
        if self.on_change is not None:
            self.on_change(before, list(self.keys.values()) + list(self.identities.values()))

    def lookup(self, secret: str) -> ApiKey | None:
        self._recheck()
        return self.keys.get(digest(secret))

    def lookup_identity(self, names: list[str]) -> ApiKey | None:
        """The credential bound to the first of a client certificate's names that has one."""
        self._recheck()
        for name in names:
            key = self.identities.get(name)
            if key is not None:
                return key
        return None
