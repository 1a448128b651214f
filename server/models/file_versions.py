"""A model kept as one file per version folder (`<dir>/<n>/<file>`, pricing's demand model),
under the same production pointer as the repository's ONNX models (models/production.py).

Without a pointer the newest version serves, read again whenever a version is added or
rewritten. With one, unnamed requests get the production version, the previous production
stays loaded for a rollback, and the newest version above production is the candidate:
loaded, answering only requests that name it. A version that does not load is skipped for the
one promoted before it; where none loads, what served keeps serving. The folder is looked at
no more than once a second: a stat per call is measurable at hundreds of calls a second.

It answers the part of the repository's interface that promotion and the admin report use
(names, serving_version, candidate, production, index, load), so `hanzo models` and the admin
RPCs promote and roll it back like any model."""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, TypeVar

from .config import ConfigError
from .errors import FailedPrecondition, NotFound, Unavailable, quote
from .model_folder import numeric_versions
from .production import Production, read_pointer, serving_plan
from .repository import READY, UNAVAILABLE, IndexEntry

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class FileVersion(Generic[T]):
    version: int
    value: T
    stamp: tuple[int, int]  # the file's (mtime_ns, size) when it was read


class FileModelVersions(Generic[T]):
    def __init__(self, model_dir: Path, file_name: str, load: Callable[[Path], T], what: str, how_to_make: str,
                 check_every_s: float = 1.0) -> None:
        self.model_dir = Path(model_dir)
        self.root, self.name = self.model_dir.parent, self.model_dir.name
        self.file_name = file_name  # what each version folder holds: "demand.npz"
        self._load_file = load
        self._what, self._how_to_make = what, how_to_make  # for messages
        self._loaded: dict[int, FileVersion[T]] = {}
        self._failed: dict[int, tuple[tuple[int, int], str]] = {}  # version -> (stamp, why), not read again
        self._serving = 0
        self._candidate: int | None = None
        self._pointer: Production | None = None
        self._error = ""  # why the last look could not follow the folder (a damaged pointer)
        self._stamp: tuple | None = None
        self._lock = threading.Lock()
        self._check_every_s = check_every_s
        self._checked = -math.inf

    # ------------------------------------------------------------------ serving

    def current(self) -> FileVersion[T]:
        """The version unnamed requests get."""
        self._refresh()
        served = self._loaded.get(self._serving)
        if served is None:
            raise Unavailable(self._why_none())
        return served

    def version(self, number: int) -> FileVersion[T]:
        """A loaded version by number (production, the previous production, the candidate)."""
        self._refresh()
        found = self._loaded.get(number)
        if found is None:
            raise NotFound(f"the {self._what} has no loaded version {number} (loaded: {sorted(self._loaded)})")
        return found

    def _why_none(self) -> str:
        if not self.model_dir.is_dir():
            return f"the {self._what} folder {self.model_dir} does not exist yet: {self._how_to_make}"
        reasons = [f"version {v}: {why}" for v, (_, why) in sorted(self._failed.items())]
        return (f"the {self._what} in {self.model_dir} has no version that loads"
                + (f" ({'; '.join([self._error] + reasons if self._error else reasons)})" if reasons or self._error
                   else f": {self._how_to_make}"))

    # ------------------------------------------------------------------ the repository's interface

    def names(self) -> list[str]:
        return [self.name]

    discover = names

    def serving_version(self, name: str) -> int:
        self._refresh()
        return self._serving

    def candidate(self, name: str) -> FileVersion[T] | None:
        self._refresh()
        return self._loaded.get(self._candidate) if self._candidate is not None else None

    def production(self, name: str) -> Production | None:
        self._refresh()
        return self._pointer

    def index(self) -> list[IndexEntry]:
        self._refresh()
        roles = {self._serving: "production" if self._pointer else "newest",
                 **({self._pointer.previous: "previous production"} if self._pointer and self._pointer.previous
                    else {}),
                 **({self._candidate: "candidate: answers only requests that name its version"}
                    if self._candidate is not None else {})}
        entries = [IndexEntry(self.name, str(v), READY, roles.get(v, "")) for v in sorted(self._loaded)]
        entries += [IndexEntry(self.name, str(v), UNAVAILABLE, why) for v, (_, why) in sorted(self._failed.items())
                    if v not in self._loaded]
        return sorted(entries, key=lambda e: int(e.version)) or [IndexEntry(self.name, "", UNAVAILABLE,
                                                                            self._why_none())]

    async def load(self, name: str) -> None:
        """Look at the folder now (after a pointer change); FailedPrecondition when the version
        the pointer names did not load."""
        if name != self.name:
            raise NotFound(f"model {quote(name)} is not the {self._what} ({self.name!r})")
        await asyncio.to_thread(self._refresh, True)
        wanted = self._pointer.version if self._pointer else self._serving
        if self._error or wanted in self._failed:
            raise FailedPrecondition(self._error or f"version {wanted}: {self._failed[wanted][1]}")

    # ------------------------------------------------------------------ following the folder

    def _refresh(self, now: bool = False) -> None:
        if not now and time.monotonic() - self._checked < self._check_every_s:
            return
        with self._lock:
            if not now and time.monotonic() - self._checked < self._check_every_s:
                return
            stamp = self._look()
            self._checked = time.monotonic()
            if now or stamp != self._stamp:
                self._follow(stamp)

    def _look(self) -> tuple:
        """What changes when a version is added or rewritten, or the pointer is replaced."""
        if not self.model_dir.is_dir():
            return ()
        seen = []
        for version in numeric_versions(self.model_dir):
            seen.append((version, _file_stamp(self.model_dir / str(version) / self.file_name)))
        return tuple(seen) + (_file_stamp(self.model_dir / "production.json"),)

    def _follow(self, stamp: tuple) -> None:
        present = [v for v, file in stamp[:-1] if file is not None] if stamp else []
        try:
            pointer = read_pointer(self.model_dir) if stamp else None
        except ConfigError as exc:  # what serves keeps serving until the pointer is written again
            self._error, self._stamp = str(exc), stamp
            log.warning("production pointer unreadable", extra={"model": self.name, "error": str(exc)})
            return
        if pointer is None:
            order, previous, candidate = sorted(present, reverse=True), None, None
        else:
            order, previous, candidate = serving_plan(pointer, present)
        files = dict((v, f) for v, f in stamp[:-1]) if stamp else {}
        serving = next((v for v in order if self._read(v, files[v])), None)
        if serving is None and self._serving in self._loaded:  # none loads: what served keeps serving
            serving = self._serving
        keep = {v for v in (serving, previous if pointer else None, candidate) if v is not None}
        for version in keep - {serving}:
            self._read(version, files[version])
        self._loaded = {v: f for v, f in self._loaded.items() if v in keep}
        self._serving, self._candidate = serving or 0, candidate if candidate in self._loaded else None
        self._pointer, self._error, self._stamp = pointer, "", stamp

    def _read(self, version: int, stamp: tuple[int, int]) -> bool:
        """Whether the version is loaded (read now if its file is new or changed); a file that
        failed is not read again until it changes."""
        have = self._loaded.get(version)
        if have is not None and have.stamp == stamp:
            return True
        failed = self._failed.get(version)
        if failed is not None and failed[0] == stamp:
            return have is not None  # the rewrite that failed is not read again; the copy before serves
        path = self.model_dir / str(version) / self.file_name
        try:
            value = self._load_file(path)
        except Exception as exc:  # noqa: BLE001 - a bad version is reported, and another serves
            self._failed[version] = (stamp, f"{path.name} does not load: {exc}")
            log.warning(f"{self._what} version did not load", extra={"model": self.name, "model_version": str(version),
                                                                    "error": str(exc)})
            return have is not None  # a rewrite that does not load leaves the copy read before serving
        self._failed.pop(version, None)
        self._loaded[version] = FileVersion(version, value, stamp)
        log.info(f"{self._what} loaded", extra={"model": self.name, "model_version": str(version)})
        return True


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return stat.st_mtime_ns, stat.st_size
