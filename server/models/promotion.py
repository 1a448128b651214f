"""Promote and roll back: a model's production pointer moved by a person, and the repository
switched to it at once.

The switch is the repository's own swap (one assignment, the replaced version retiring after
its calls in flight), so nothing in flight is dropped. The pointer is written first and the
model loaded under it; a version that does not load leaves the pointer as it was and the
served version unchanged, and the caller is told why. A surface's model moves with its
companions (search's scorer with its product encoder: the same version of each), the
companion after the model, so whichever version the scorer serves finds its encoder loaded."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

from .errors import FailedPrecondition, HanzoError, NotFound, quote
from .production import Production, promoted, read_pointer, rolled_back, write_pointer
from .repository import MODEL_NAME, ModelRepository

log = logging.getLogger(__name__)


class Promotions:
    def __init__(self, repository: ModelRepository, companions: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.repository = repository
        self.companions = dict(companions or {})
        self._lock = asyncio.Lock()  # one pointer change at a time

    def _group(self, name: str) -> list[str]:
        if not MODEL_NAME.match(name) or name not in self.repository.discover():
            raise NotFound(f"model {quote(name)} is not in the repository (models: {self.repository.discover()[:50]})")
        return [name, *(c for c in self.companions.get(name, ()) if c in self.repository.discover())]

    async def promote(self, name: str, version: int, by: str) -> list[str]:
        """Make `version` (0: the candidate) production for `name` and its companions; returns
        the models switched."""
        async with self._lock:
            group = self._group(name)
            if version == 0:
                candidate = self.repository.candidate(name)
                if candidate is None:
                    raise FailedPrecondition(f"model {quote(name)} has no candidate to promote (a version newer than "
                                             f"production, loaded); name a version")
                version = candidate.version
            if version < 0:
                raise FailedPrecondition(f"model_version {version}: versions are positive integers")
            for member in group:
                if not (self.repository.root / member / str(version)).is_dir():
                    raise NotFound(f"model {quote(member)} has no version folder {version}")
            plans = [(m, promoted(read_pointer(self._dir(m)), version, by)) for m in group]
            await self._switch(plans)
            return group

    async def rollback(self, name: str, by: str) -> list[str]:
        async with self._lock:
            group = self._group(name)
            plans = [(m, rolled_back(read_pointer(self._dir(m)), m, by)) for m in group]
            await self._switch(plans)
            return group

    def _dir(self, name: str) -> Path:
        return self.repository.root / name

    async def _switch(self, plans: list[tuple[str, Production]]) -> None:
        """Each model in order: pointer written, model loaded under it; the first that does not
        serve its new version puts every pointer written so far back."""
        before = [(name, read_pointer(self._dir(name))) for name, _ in plans]
        done: list[tuple[str, Production | None]] = []
        for (name, target), (_, old) in zip(plans, before):
            write_pointer(self._dir(name), target)
            done.append((name, old))
            reason = await self._load(name)
            serving = self.repository.serving_version(name)
            if serving != target.version:
                await self._restore(done)
                raise FailedPrecondition(f"model {quote(name)} version {target.version} did not load, so nothing "
                                         f"was switched (serving: version {serving}): {reason or 'no reason given'}")
            log.info("model production switched", extra={"model": name, "model_version": str(target.version),
                                                          "action": target.action, "by": target.by})

    async def _load(self, name: str) -> str:
        try:
            await self.repository.load(name)
        except HanzoError as exc:  # a failed candidate fails the load without touching production
            return exc.message
        return ""

    async def _restore(self, done: list[tuple[str, Production | None]]) -> None:
        for name, old in reversed(done):
            if old is None:
                (self._dir(name) / "production.json").unlink(missing_ok=True)
            else:
                write_pointer(self._dir(name), old)
            await self._load(name)
