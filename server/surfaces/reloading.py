"""A file the server reads at its first use and again whenever it changes on disk (a nightly
job rewrites it by rename; looked at no more than once a second), so a new plan or model needs
no restart."""
from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Callable, Generic, TypeVar

from ..models.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


class ReloadingFile(Generic[T]):
    def __init__(self, path: str, load: Callable[[Path], T], what: str, how_to_make: str,
                 check_every_s: float = 1.0) -> None:
        self.path = path
        self._load = load
        self._what = what  # "inventory plan": for messages
        self._how_to_make = how_to_make  # the command that writes it
        self._value: T | None = None
        self._stamp: tuple | None = None
        self._lock = threading.Lock()
        self._check_every_s = check_every_s  # a stat() per call is measurable at hundreds of calls a second
        self._checked = -math.inf

    def current(self) -> T:
        if self._value is not None and time.monotonic() - self._checked < self._check_every_s:
            return self._value
        if not self.path:
            raise Unavailable(f"no {self._what} is configured: {self._how_to_make}")
        path = Path(self.path)
        try:
            stat = path.stat()
        except FileNotFoundError:
            if self._value is not None:  # between a rewrite's renames: what was loaded still serves
                return self._value
            raise Unavailable(f"the {self._what} {path} does not exist yet: {self._how_to_make}") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        self._checked = time.monotonic()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._reload(path, stamp)
        return self._value

    def _reload(self, path: Path, stamp: tuple) -> None:
        """Load the changed file; one that cannot be read (caught mid-write, damaged) leaves the
        loaded one serving, and is tried again at the next look."""
        try:
            value = self._load(path)
        except Exception as exc:  # whatever the loader raises: the file is not one it can serve
            if self._value is None:
                raise Unavailable(f"the {self._what} {path} cannot be read ({type(exc).__name__}: {exc}): "
                                  f"{self._how_to_make}") from None
            log.warning(f"{self._what} not reloaded: the previous one serves",
                        extra={"path": str(path), "error": f"{type(exc).__name__}: {exc}"})
            return
        self._value, self._stamp = value, stamp
        log.info(f"{self._what} loaded", extra={"path": str(path)})
