"""The model repository, Triton layout: <root>/<model>/config.pbtxt and numeric version
folders <root>/<model>/<n>/model.onnx, selected by version_policy.

A version loads off the event loop (session build and warm-up in a thread), becomes visible
in one assignment, and the version it replaces retires only after its queued and running
requests finish, so a swap drops nothing in flight. A failed load leaves what was serving in
place and says why in the index; under version_policy latest a newest version that fails
falls back to the next older one that loads. A version that failed is not rebuilt on every
poll (models/retry.py). A model with a production pointer (models/production.py) serves the
version a person promoted instead of the newest, with its candidate and the previous
production loaded beside it; no poll moves the pointer.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from .config import ConfigError, override_config, version_candidates
from .errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, quote
from .load_overrides import remove_override_folder, write_override_folder
from .model_folder import fingerprint, read_model_folder
from .production import Production, read_pointer, serving_plan
from .retry import FailedBuilds
from .version import ModelVersion
from .version_build import RepositoryOptions, LoadAttempt, load_error, build_version

log = logging.getLogger(__name__)

# What a model name may be: a folder's name in the repository, never a path.
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")

READY, LOADING, UNAVAILABLE, UNLOADING = "READY", "LOADING", "UNAVAILABLE", "UNLOADING"


@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    state: str
    reason: str = ""


@dataclass
class _Model:
    versions: dict[int, ModelVersion] = field(default_factory=dict)  # serving now
    latest: ModelVersion | None = None
    fingerprints: dict[int, str] = field(default_factory=dict)  # of the builds serving now
    states: dict[int, tuple[str, str]] = field(default_factory=dict)  # version -> (state, reason)
    error: str = ""  # the last load's model-level failure (config.pbtxt, no version folder)
    loading: bool = False
    production: Production | None = None  # the pointer the last load followed (None: Triton's rule)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ModelRepository:
    def __init__(self, root: Path, options: RepositoryOptions | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = Path(root)
        self.options = options or RepositoryOptions()
        self._models: dict[str, _Model] = {}
        # unloaded by a call (not gone from the folder): the versions they had, listed UNAVAILABLE
        self._unloaded: dict[str, list[int]] = {}
        self._retiring: set[asyncio.Task] = set()
        self._failures = FailedBuilds(self.options.retry_first_s, self.options.retry_max_s, clock)
        self._readiness: list[Callable[[bool], Awaitable[None]]] = []
        self._reported: bool | None = None
        # models loaded from a load's file: overrides (models/load_overrides.py): their folders
        self._override_dirs: dict[str, Path] = {}

    # ------------------------------------------------------------------ lookups (hot path)

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The version to serve: the newest loaded unless `version` names one."""
        # Triton's words first: its clients and examples look for them
        model = self._models.get(name)
        if model is None:
            if name in self._unloaded:
                raise NotFound(f"Request for unknown model: '{name}' has no available versions (unloaded: "
                               f"RepositoryModelLoad loads it again)")
            known = sorted(self._models)
            raise NotFound(f"Request for unknown model: '{name}' is not found (models: {known[:50]})")
        if not version:
            if model.latest is None:
                if model.loading:
                    raise Unavailable(f"model {name!r} is loading")
                raise Unavailable(f"Request for unknown model: '{name}' has no available versions: "
                                  f"{self._why_unavailable(model)}")
            return model.latest
        try:
            number = int(version)
        except ValueError:
            raise InvalidArgument("model_version", f"failed to get model version from specified version string "
                                                   f"'{version}', version should be an integral value > 0") from None
        if number < 1:
            raise InvalidArgument("model_version", f"invalid model version specified '{version}', version should be "
                                                   f"an integral value > 0")
        found = model.versions.get(number)
        if found is None:
            state = model.states.get(number)
            if state and state[0] == LOADING:
                raise Unavailable(f"model {name!r} version {number} is loading")
            raise NotFound(f"Request for unknown model: '{name}' version {number} is not found "
                           f"(ready: {sorted(model.versions)})")
        return found

    @staticmethod
    def _why_unavailable(model: _Model) -> str:
        reasons = [f"version {v}: {reason}" for v, (state, reason) in sorted(model.states.items())
                   if state == UNAVAILABLE and reason]
        return model.error or "; ".join(reasons) or "no version loaded"

    def names(self) -> list[str]:
        return sorted(self._models)

    def serving_version(self, name: str) -> int:
        """The version unnamed requests get now, 0 when none."""
        model = self._models.get(name)
        return model.latest.version if model is not None and model.latest is not None else 0

    def candidate(self, name: str) -> ModelVersion | None:
        """Under a production pointer, the loaded version newer than production."""
        model = self._models.get(name)
        if model is None or model.production is None or model.latest is None:
            return None
        newer = [v for v in model.versions if v > model.latest.version]
        return model.versions[max(newer)] if newer else None

    def production(self, name: str) -> Production | None:
        """The pointer the model's last load followed (None: it follows its version_policy)."""
        model = self._models.get(name)
        return model.production if model is not None else None

    def ready_versions(self, name: str) -> list[ModelVersion]:
        model = self._models.get(name)
        return [model.versions[v] for v in sorted(model.versions)] if model else []

    def is_ready(self) -> bool:
        """Every model in the repository serves a version: False while a model is loading for
        the first time, and while one has no version that loads (a bad config.pbtxt, every
        version failing, a GPU asked for where there is none). A reload of a model that
        serves does not make it unready: its old version answers until the swap. The KServe
        ServerReady and the gRPC health service both answer from this."""
        return all(m.latest is not None for m in self._models.values())

    def on_readiness(self, callback: Callable[[bool], Awaitable[None]]) -> None:
        """Await `callback(is_ready())` after each load, poll or unload that changes it (an
        explicit RepositoryModelLoad included). Register once the start-up load is done and
        the caller has stated the readiness it starts from."""
        self._readiness.append(callback)
        self._reported = self.is_ready()

    async def _notify_readiness(self) -> None:
        ready = self.is_ready()
        if ready == self._reported or not self._readiness:
            return
        self._reported = ready
        for callback in self._readiness:
            await callback(ready)

    def index(self) -> list[IndexEntry]:
        """Per model, its versions' states; a model with no version state, or whose config
        keeps any version from serving, gets one entry with version "" saying why. A version
        that serves while a later load of the model failed is READY with that reason."""
        entries = []
        for name in sorted(set(self.discover()) - set(self._models)):  # in the folder, not loaded
            versions = self._unloaded.get(name)
            if versions:
                entries += [IndexEntry(name, str(v), UNAVAILABLE, "unloaded") for v in versions]
            else:
                entries.append(IndexEntry(name, "", "", ""))  # never loaded: its name only, as Triton lists it
        for name in sorted(self._models):
            model = self._models[name]
            if not model.states or (model.error and model.latest is None):
                entries.append(IndexEntry(name, "", LOADING if model.loading else UNAVAILABLE, model.error))
            for version in sorted(model.states):
                state, reason = model.states[version]
                entries.append(IndexEntry(name, str(version), state, reason))
        return sorted(entries, key=lambda e: e.name)  # stable: each model's versions keep their order

    def config(self, name: str) -> mc.ModelConfig:
        """The completed config of the newest version serving."""
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"model {name!r} is not in the repository")
        if model.latest is None:
            raise Unavailable(f"model {name!r} has no loaded config: {self._why_unavailable(model)}")
        return model.latest.config

    # ------------------------------------------------------------------ loading

    def discover(self) -> list[str]:
        """The model folders of the repository: only those whose names are model names."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and MODEL_NAME.match(p.name))

    async def load_all(self, only: list[str] | None = None) -> None:
        """The start-up load: every model folder (or those of `only` that are folders), each
        model's failure logged and shown in the index, never raised."""
        names = [n for n in self.discover() if only is None or n in only]
        for name in names:
            self._models.setdefault(name, _Model()).loading = True
        for name in names:
            await self._load_quietly(name)
        await self._notify_readiness()

    async def poll(self) -> None:
        """Load new or changed models and unload removed ones (Triton's poll mode). A version
        that failed is tried again when its files change, or unchanged after a backoff."""
        present = set(self.discover())
        for name in sorted(present):
            await self._load_quietly(name)
        for name in sorted(set(self._models) - present):
            await self._unload(name)
        await self._notify_readiness()

    async def _load_quietly(self, name: str) -> None:
        try:
            await self._load(name, retry=False)
        except NotFound:
            pass  # the folder went between the listing and the load: the next poll unloads it
        except Exception:  # one model's surprise must not stop the others' loads and polls
            log.exception("model load failed unexpectedly", extra={"model": name})

    async def load(self, name: str, config_json: str | None = None, files: dict[str, bytes] | None = None) -> None:
        """An explicit load (RepositoryModelLoad): rebuild the versions whose config or files
        changed, and every version that failed before, however recently; swap in what builds,
        retire what the policy no longer selects. `files` (Triton's file: overrides, with a
        `config_json`): the model's directory sent in the load, served in place of its folder
        until a load without files.

        Raises NotFound for a name that is no model folder, and FailedPrecondition, naming the
        model and each reason, when the load failed: config.pbtxt cannot be served, or a
        version the policy selects did not build. As in Triton, a load with any failed version
        is a failed load even where other versions did build: those swap in all the same, and
        what served before serves on where nothing new replaces it. Under version_policy latest
        a failed newest version is therefore an error although an older version serves in its
        place; the message names the versions serving.
        """
        # a name, never a path: "", ".", "../x" and "/etc" are no model, and nothing is looked up for them
        if not MODEL_NAME.match(name) or (not files and name not in self.discover()):
            # "failed to load": Triton's words, which its clients and examples look for
            raise NotFound(f"failed to load {quote(name)}: the model is not in the repository (model names are "
                           f"letters, digits, '_', '-' and '.', not first; models: {self.discover()[:50]})")
        override = None
        if config_json is not None:
            try:
                override = override_config(config_json, self.root / name)
            except ConfigError as exc:  # Triton's words: its clients look for "failed to load"
                raise InvalidArgument('parameters["config"]', f"failed to load {quote(name)}: {exc}") from None
        folder = write_override_folder(name, files, override is not None) if files else None
        replaced = self._override_dirs.pop(name, None)
        if folder is not None:
            self._override_dirs[name] = folder
        try:
            error = await self._load(name, retry=True, override=override)
        finally:
            remove_override_folder(replaced)
            self._unloaded.pop(name, None)
            await self._notify_readiness()
        if error:
            raise FailedPrecondition(error)  # "... failed to load ...": Triton's words, which its examples look for

    async def _load(self, name: str, retry: bool, override: mc.ModelConfig | None = None) -> str:
        """Load or reload a model; returns why the load failed, "" when it did not."""
        model_dir = self._override_dirs.get(name) or self.root / name
        if not model_dir.is_dir():
            raise NotFound(f"model {name!r} is not in the repository at {self.root}")
        model = self._models.setdefault(name, _Model())
        async with model.lock:
            model.loading = True
            try:
                return await self._load_locked(name, model_dir, model, retry, override)
            finally:
                model.loading = False

    async def _load_locked(self, name: str, model_dir: Path, model: _Model, retry: bool,
                           override: mc.ModelConfig | None = None) -> str:
        try:
            config, config_bytes, present = read_model_folder(model_dir, override)
            pointer = read_pointer(model_dir)
            if pointer is None:
                candidates, count = version_candidates(config, present)
        except (ConfigError, OSError) as exc:
            return self._model_failed(name, model, str(exc))
        model.error = ""
        self._failures.keep_only(name, set(present))
        attempt = LoadAttempt(pointer=pointer)
        build = (name, model_dir, model, config, config_bytes, attempt, retry)
        if pointer is None:
            await self._build_some(*build, candidates, count)
            return self._swap(name, model, attempt)
        order, previous, candidate = serving_plan(pointer, present)
        chosen = await self._build_some(*build, order, 1)
        attempt.primary = chosen[0] if chosen else None
        if not chosen:
            attempt.failed.setdefault(pointer.version, "version folder missing or holds no model file")
            if model.latest is not None:  # what served keeps serving, never a candidate in its place
                kept = model.latest.version
                attempt.chosen[kept], attempt.primary = model.latest, kept
                attempt.roles[kept] = f"serving: production version {pointer.version} did not load"
        for role, version in (("previous production, kept loaded for a rollback", previous),
                              ("candidate: answers only requests that name its version until promoted", candidate)):
            if version is not None and version != attempt.primary and await self._build_some(*build, [version], 1):
                attempt.roles[version] = role
        return self._swap(name, model, attempt)

    async def _build_some(self, name: str, model_dir: Path, model: _Model, config: mc.ModelConfig,
                          config_bytes: bytes, attempt: LoadAttempt, retry: bool, versions: list[int],
                          count: int) -> list[int]:
        """Build `versions` in order into `attempt` until `count` of them serve; returns those.
        A version whose files did not change keeps its build; one whose rebuild fails keeps
        serving the build loaded before."""
        chosen: list[int] = []
        for v in versions:
            if len(chosen) == count:
                break
            if v in attempt.chosen:
                chosen.append(v)
                continue
            files = attempt.prints[v] = fingerprint(config_bytes, model_dir / str(v))
            serving = model.versions.get(v)
            if serving is not None and model.fingerprints.get(v) == files:
                attempt.chosen[v] = serving
                chosen.append(v)
                continue
            reason = None if retry else self._failures.held_back(name, v, files)
            if reason is None:
                reason = await self._try_build(name, v, model_dir, model, config, attempt)
                if reason is None:
                    chosen.append(v)
                    continue
            attempt.failed[v] = reason
            if serving is not None:
                attempt.chosen[v] = serving  # the build loaded before serves on
                chosen.append(v)
        return chosen

    async def _try_build(self, name: str, number: int, model_dir: Path, model: _Model, config: mc.ModelConfig,
                         attempt: LoadAttempt) -> str | None:
        """Build one version into `attempt`; returns why it failed, None when it built."""
        attempt.tried.add(number)
        model.states[number] = (LOADING, "")
        try:
            version = await asyncio.to_thread(self._build, name, number, model_dir / str(number), config)
        except Exception as exc:  # noqa: BLE001 - one bad version must not take the others down
            reason = f"{type(exc).__name__}: {exc}"
            retry_s = self._failures.failed(name, number, attempt.prints[number], reason)
            log.error("model version failed to load", extra={"model": name, "model_version": str(number),
                                                             "reason": reason, "retry_after_s": retry_s})
            return reason
        self._failures.succeeded(name, number)
        attempt.built[number] = attempt.chosen[number] = version
        return None

    def _model_failed(self, name: str, model: _Model, reason: str) -> str:
        """config.pbtxt or the listing failed: what serves keeps serving, and says why the
        load failed beside it; the reason is logged once, not on every poll."""
        if reason != model.error:
            log.error("model not loaded", extra={"model": name, "reason": reason})
        model.error = reason
        model.states = {v: s for v, s in model.states.items() if s[0] == UNLOADING}
        for v in model.versions:
            model.states[v] = (READY, f"serving what loaded before; the last load failed: {reason}")
        return f"model {quote(name)} failed to load: {reason}"

    def _swap(self, name: str, model: _Model, attempt: LoadAttempt) -> str:
        old = model.versions
        # Nothing chosen loads: what served keeps serving rather than nothing.
        keep_old = not attempt.chosen and bool(old)
        serving = dict(old) if keep_old else attempt.chosen
        error = load_error(name, attempt, serving)
        states = {v: s for v, s in model.states.items() if s[0] == UNLOADING}
        states.update({v: (UNAVAILABLE, reason) for v, reason in attempt.failed.items()})
        for v in serving:
            failed = attempt.failed.get(v) or (error if keep_old else "")
            states[v] = (READY, f"serving the build loaded before; the last load failed: {failed}" if failed else "")
        for v, role in attempt.roles.items():
            if v in serving and not attempt.failed.get(v):
                states[v] = (READY, role)
        fingerprints = {v: attempt.prints[v] if v in attempt.built else model.fingerprints[v] for v in serving}
        latest = self._latest(model, attempt, serving, keep_old)
        # The swap: one assignment each, with no await in between.
        model.states = states
        model.versions = serving
        model.latest = latest
        model.fingerprints = fingerprints
        model.production = attempt.pointer
        for v, version in old.items():
            if serving.get(v) is not version:
                self._retire(model, version, keep_state=v in serving)
        self._log_outcome(name, attempt, serving, changed=serving != old)
        return error

    @staticmethod
    def _latest(model: _Model, attempt: LoadAttempt, serving: dict[int, ModelVersion],
                keep_old: bool) -> ModelVersion | None:
        """What unnamed requests get: the newest version serving (Triton's rule), or under a
        pointer the production version that loaded, never a candidate."""
        if keep_old:
            return model.latest
        if attempt.pointer is None:
            return serving[max(serving)] if serving else None
        if attempt.primary is not None and attempt.primary in serving:
            return serving[attempt.primary]
        return model.latest if model.latest is not None and model.latest in serving.values() else None

    @staticmethod
    def _log_outcome(name: str, attempt: LoadAttempt, serving: dict[int, ModelVersion], changed: bool) -> None:
        newest = max(serving, default=None)
        skipped = {v: r for v, r in attempt.failed.items() if v in attempt.tried and (newest is None or v > newest)}
        if skipped and newest is not None:
            log.warning("model version fell back", extra={
                "model": name, "model_version": str(newest), "failed_versions": sorted(skipped),
                "reason": "; ".join(f"version {v}: {r}" for v, r in sorted(skipped.items(), reverse=True))})
        if changed and serving:
            log.info("model loaded", extra={"model": name, "versions": sorted(serving)})

    def _build(self, name: str, number: int, version_dir: Path, config: mc.ModelConfig) -> ModelVersion:
        return build_version(name, number, version_dir, config, self.options)

    def _retire(self, model: _Model, version: ModelVersion, keep_state: bool) -> None:
        if not keep_state:
            model.states[version.version] = (UNLOADING, "")

        async def retire() -> None:
            await version.retire()
            if not keep_state and model.states.get(version.version, ("",))[0] == UNLOADING:
                model.states.pop(version.version, None)

        task = asyncio.get_running_loop().create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def unload(self, name: str) -> None:
        """Retire every version of a model (after its requests finish); it stays in the index,
        UNAVAILABLE, until loaded again."""
        model = self._models.get(name)
        versions = sorted(model.versions) if model is not None else []
        try:
            await self._unload(name)
        finally:
            remove_override_folder(self._override_dirs.pop(name, None))
            await self._notify_readiness()
        self._unloaded[name] = versions

    async def _unload(self, name: str) -> None:
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"model {quote(name)} is not loaded")
        async with model.lock:
            versions, model.versions, model.latest = model.versions, {}, None
            for version in versions.values():
                self._retire(model, version, keep_state=False)
        await self.wait_retired()
        self._models.pop(name, None)
        self._failures.forget(name)

    async def wait_retired(self) -> None:
        if self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)

    async def close(self) -> None:
        for name in list(self._models):
            await self._unload(name)
        for folder in self._override_dirs.values():
            remove_override_folder(folder)
        self._override_dirs.clear()
