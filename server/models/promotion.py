"""Promote and roll back: a model's production pointer moved by a person, and the repository
switched to it at once.

The switch is the repository's own swap (one assignment, the replaced version retiring after
its calls in flight), so nothing in flight is dropped. The pointer is written first and the
model loaded under it; a version that does not load, a pointer that cannot be written or read,
or a caller who goes away midway leaves every pointer as it was and the served versions
unchanged (the switch runs to its end shielded from the caller's cancellation), and the caller
is told why. A surface's model moves with its companions (search's scorer with its product
encoder: the same version of each), the companions first: the version a companion replaces
stays loaded as its previous production, so whichever version the scorer serves meanwhile
finds its encoder."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from .config import ConfigError
from .errors import FailedPrecondition, HanzoError, NotFound, quote
from .production import (POINTER_FILE, Production, newest_above, promoted, read_pointer, rolled_back,
                         write_pointer)
from .repository import MODEL_NAME, ModelRepository

log = logging.getLogger(__name__)


class Promotions:
    def __init__(self, repository: ModelRepository, companions: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.repository = repository
        self.companions = dict(companions or {})
        self._lock = asyncio.Lock()  # one pointer change at a time

    def _group(self, name: str) -> list[str]:
        """The companions, then the model: the order of a switch."""
        models = self.repository.discover()
        if not MODEL_NAME.match(name) or name not in models:
            raise NotFound(f"model {quote(name)} is not in the repository (models: {models[:50]})")
        return [*(c for c in self.companions.get(name, ()) if c in models), name]

    async def promote(self, name: str, version: int, by: str, expected: int | None = None) -> list[str]:
        """Make `version` (0: the candidate) production for `name` and its companions; returns
        the models switched. A caller who goes away does not stop a switch midway. `expected`:
        switch only if that version serves when the switch's turn comes (a compare-and-set, for
        a caller that judged what served then)."""
        return await asyncio.shield(self._promote(name, version, by, expected))

    async def rollback(self, name: str, by: str, expected: int | None = None) -> list[str]:
        return await asyncio.shield(self._rollback(name, by, expected))

    def _check_expected(self, name: str, expected: int | None) -> None:
        serving = self.repository.serving_version(name)
        if expected is not None and serving != expected:
            raise FailedPrecondition(f"model {quote(name)} serves version {serving} now, not {expected}: "
                                     f"production moved meanwhile, so nothing was switched")

    async def _promote(self, name: str, version: int, by: str, expected: int | None = None) -> list[str]:
        async with self._lock:
            self._check_expected(name, expected)
            group = self._group(name)
            if version == 0:
                version = self._candidate_version(name)
            if version < 0:
                raise FailedPrecondition(f"model_version {version}: versions are positive integers")
            for member in group:
                if not (self.repository.root / member / str(version)).is_dir():
                    raise NotFound(f"model {quote(member)} has no version folder {version}")
            await self._switch([(m, promoted(self._current(m), version, by)) for m in group])
            return group

    async def _rollback(self, name: str, by: str, expected: int | None = None) -> list[str]:
        async with self._lock:
            self._check_expected(name, expected)
            group = self._group(name)
            await self._switch([(m, rolled_back(self._current(m), m, by)) for m in group])
            return group

    def _candidate_version(self, name: str) -> int:
        """The candidate: the newest version folder above production, loaded already or, where
        a server that does not poll has not seen it (after `hanzo retrain`), loaded now."""
        serving = self.repository.serving_version(name)
        newest = newest_above(self._dir(name), serving)
        if newest is None:
            raise FailedPrecondition(f"model {quote(name)} has no candidate to promote (no version newer than "
                                     f"production {serving}); name a version")
        return newest

    def _current(self, name: str) -> Production | None:
        """The model's pointer; for one without a pointer, the version serving it now (Triton's
        rule), so a first promotion can be rolled back to it."""
        pointer = _read(self._dir(name))
        if pointer is not None:
            return pointer
        serving = self.repository.serving_version(name)
        return Production(serving, (serving,), "pin", "", time.time()) if serving else None

    def _dir(self, name: str) -> Path:
        return self.repository.root / name

    async def _switch(self, plans: list[tuple[str, Production]]) -> None:
        """Each model in order: pointer written, model loaded under it; any failure puts every
        pointer written so far back and reloads those models."""
        before = [(name, _read(self._dir(name))) for name, _ in plans]
        done: list[tuple[str, Production | None]] = []
        try:
            for (name, target), (_, old) in zip(plans, before):
                await _write(self._dir(name), target)
                done.append((name, old))
                reason = await self._load(name)
                serving = self.repository.serving_version(name)
                if serving != target.version:
                    raise FailedPrecondition(f"model {quote(name)} version {target.version} did not load, so nothing "
                                             f"was switched (serving: version {serving}): "
                                             f"{reason or 'no reason given'}")
                log.info("model production switched", extra={"model": name, "model_version": str(target.version),
                                                              "action": target.action, "by": target.by})
        except BaseException:
            await self._restore(done)
            raise

    async def _load(self, name: str) -> str:
        try:
            await self.repository.load(name)
        except HanzoError as exc:  # a failed candidate fails the load without touching production
            return exc.message
        return ""

    async def _restore(self, done: list[tuple[str, Production | None]]) -> None:
        """Every pointer written put back, each model reloaded; one that cannot be is logged
        and the rest still are."""
        for name, old in reversed(done):
            try:
                if old is None:
                    await asyncio.to_thread(_unlink_durably, self._dir(name) / POINTER_FILE)
                else:
                    await _write(self._dir(name), old)
                await self._load(name)
            except Exception:  # noqa: BLE001 - the others must still be put back
                log.exception("model pointer not restored", extra={"model": name})


def _read(model_dir: Path) -> Production | None:
    try:
        return read_pointer(model_dir)
    except ConfigError as exc:
        raise FailedPrecondition(f"{exc}: write it again with `hanzo models promote --model-repo`") from None


async def _write(model_dir: Path, production: Production) -> None:
    """Off the event loop (two fsyncs); a disk that refuses is the caller's FAILED_PRECONDITION."""
    try:
        await asyncio.to_thread(write_pointer, model_dir, production)
    except OSError as exc:
        raise FailedPrecondition(f"the production pointer of {model_dir.name!r} could not be written: "
                                 f"{exc.strerror or exc}") from None


def _unlink_durably(path: Path) -> None:
    import os

    path.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
