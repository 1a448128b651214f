"""The model repository, Triton layout: <root>/<model>/config.pbtxt and numeric version
folders <root>/<model>/<n>/model.onnx, selected by version_policy.

A version loads off the event loop (session build and warm-up in a thread), becomes visible
in one assignment, and the version it replaces retires only after its queued and running
requests finish, so a swap drops nothing in flight. A failed load leaves what was serving in
place and says why in the index.
"""
from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from .errors import NotFound, Unavailable
from .config import (CONFIG_FILE, ConfigError, batching_policy, complete_io, instance_kind, load_config,
                     parameter, select_versions)
from .onnx_backend import OnnxRuntimeBackend, choose_providers
from .triton_backend import NAME_PARAMETER as REMOTE_NAME
from .triton_backend import URL_PARAMETER as REMOTE_URL
from .triton_backend import RemoteTritonBackend
from .version import ModelVersion

log = logging.getLogger(__name__)

READY, LOADING, UNAVAILABLE, UNLOADING = "READY", "LOADING", "UNAVAILABLE", "UNLOADING"


@dataclass(frozen=True)
class RepositoryOptions:
    device: str = "auto"  # auto | cpu | cuda: the execution provider preference
    # Loaders of what a version ships beside its model, by the config.pbtxt parameter
    # `artifacts` (e.g. "recommend": embeddings and an ANN index): loader(version_dir) -> object,
    # run in the loading thread, so a version and its artifacts swap in as one unit.
    artifact_loaders: dict = field(default_factory=dict)


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
    config: mc.ModelConfig | None = None
    fingerprints: dict[int, str] = field(default_factory=dict)
    states: dict[int, tuple[str, str]] = field(default_factory=dict)  # version -> (state, reason)
    error: str = ""  # model-level failure (bad config, no versions)
    loading: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _numeric_versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _fingerprint(config_bytes: bytes, version_dir: Path) -> str:
    """Changes when config.pbtxt or any file of the version folder changes."""
    digest = hashlib.sha256(config_bytes)
    for path in sorted(version_dir.rglob("*")):
        if path.is_file():
            st = path.stat()
            digest.update(f"{path.relative_to(version_dir)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


class ModelRepository:
    def __init__(self, root: Path, options: RepositoryOptions | None = None) -> None:
        self.root = Path(root)
        self.options = options or RepositoryOptions()
        self._models: dict[str, _Model] = {}
        self._retiring: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ lookups (hot path)

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The version to serve: the newest loaded unless `version` names one."""
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"model {name!r} is not in the repository (models: {sorted(self._models)})")
        if not version:
            if model.latest is None:
                if model.loading:
                    raise Unavailable(f"model {name!r} is loading")
                raise Unavailable(f"model {name!r} is not available: {model.error or 'no version loaded'}")
            return model.latest
        try:
            number = int(version)
        except ValueError:
            raise NotFound(f"model {name!r} has no version {version!r} (versions are integers)") from None
        found = model.versions.get(number)
        if found is None:
            state = model.states.get(number)
            if state and state[0] == LOADING:
                raise Unavailable(f"model {name!r} version {number} is loading")
            raise NotFound(f"model {name!r} has no ready version {number} (ready: {sorted(model.versions)})")
        return found

    def names(self) -> list[str]:
        return sorted(self._models)

    def ready_versions(self, name: str) -> list[ModelVersion]:
        model = self._models.get(name)
        return [model.versions[v] for v in sorted(model.versions)] if model else []

    def is_ready(self) -> bool:
        """Every model in the repository serves a version and none is loading."""
        return all(m.latest is not None and not m.loading for m in self._models.values())

    def index(self) -> list[IndexEntry]:
        entries = []
        for name in sorted(self._models):
            model = self._models[name]
            if not model.states:
                entries.append(IndexEntry(name, "", LOADING if model.loading else UNAVAILABLE, model.error))
            for version in sorted(model.states):
                state, reason = model.states[version]
                entries.append(IndexEntry(name, str(version), state, reason))
        return entries

    def config(self, name: str) -> mc.ModelConfig:
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"model {name!r} is not in the repository")
        if model.config is None:
            raise Unavailable(f"model {name!r} has no loaded config: {model.error or 'loading'}")
        return model.config

    # ------------------------------------------------------------------ loading

    def discover(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    async def load_all(self) -> None:
        names = self.discover()
        for name in names:
            self._models.setdefault(name, _Model()).loading = True
        for name in names:
            await self.load(name)

    async def poll(self) -> None:
        """Load new or changed models and unload removed ones (Triton's poll mode)."""
        present = set(self.discover())
        for name in sorted(present):
            await self.load(name)
        for name in sorted(set(self._models) - present):
            await self.unload(name)

    async def load(self, name: str) -> None:
        """Load or reload a model: versions whose config or files changed are rebuilt and
        swapped in; versions the policy no longer selects retire."""
        model_dir = self.root / name
        if not model_dir.is_dir():
            raise NotFound(f"model {name!r} is not in the repository at {self.root}")
        model = self._models.setdefault(name, _Model())
        async with model.lock:
            model.loading = True
            try:
                await self._load_locked(name, model_dir, model)
            finally:
                model.loading = False

    async def _load_locked(self, name: str, model_dir: Path, model: _Model) -> None:
        try:
            config = load_config(model_dir)
            config_bytes = (model_dir / CONFIG_FILE).read_bytes() if (model_dir / CONFIG_FILE).exists() else b""
            present = [v for v in _numeric_versions(model_dir)
                       if (model_dir / str(v) / config.default_model_filename).is_file()]
            if not present:
                raise ConfigError(f"{model_dir}: no version folder holds {config.default_model_filename}")
            wanted = select_versions(config, present)
        except (ConfigError, OSError) as exc:
            model.error = str(exc)
            log.error("model not loaded", extra={"model": name, "reason": str(exc)})
            return
        prints = {v: _fingerprint(config_bytes, model_dir / str(v)) for v in wanted}
        to_build = [v for v in wanted if model.fingerprints.get(v) != prints[v] or v not in model.versions]
        if not to_build and set(model.versions) == set(wanted):
            return
        for v in to_build:
            model.states[v] = (LOADING, "")
        built: dict[int, ModelVersion] = {}
        completed = config
        for v in to_build:
            try:
                version, completed = await asyncio.to_thread(self._build, name, v, model_dir / str(v), completed)
                built[v] = version
                model.states[v] = (READY, "")
            except Exception as exc:  # one bad version must not take the others down
                reason = f"{type(exc).__name__}: {exc}"
                model.states[v] = (UNAVAILABLE, reason)
                log.error("model version failed to load", extra={"model": name, "model_version": str(v),
                                                                 "reason": reason})
        if not built and to_build:
            model.error = "; ".join(model.states[v][1] for v in to_build)
            return
        old = model.versions
        serving = {v: built.get(v) or old[v] for v in wanted if v in built or v in old}
        # The swap: one assignment each, with no await in between.
        model.versions = serving
        model.latest = serving[max(serving)] if serving else None
        model.config = completed if built else model.config
        model.error = ""
        model.fingerprints.update({v: prints[v] for v in built})
        for v, version in old.items():
            if serving.get(v) is not version:
                self._retire(model, version, keep_state=v in serving)
        log.info("model loaded", extra={"model": name, "versions": sorted(serving)})

    def _build(self, name: str, number: int, version_dir: Path, config: mc.ModelConfig):
        """Blocking: build the backend, complete and check the config, warm up."""
        config = copy.deepcopy(config)
        policy = batching_policy(config)
        remote = parameter(config, REMOTE_URL, "")
        if remote:
            backend = RemoteTritonBackend(remote, parameter(config, REMOTE_NAME, name), str(number),
                                          policy.instance_count)
        else:
            backend = OnnxRuntimeBackend(
                version_dir / config.default_model_filename,
                instance_count=policy.instance_count,
                providers=choose_providers(instance_kind(config), self.options.device),
                intra_op_threads=int(parameter(config, "intra_op_thread_count", "1")),
                inter_op_threads=int(parameter(config, "inter_op_thread_count", "1")),
            )
        try:
            complete_io(config, backend.inputs, backend.outputs)
            version = ModelVersion(name, number, version_dir, config, backend, policy)
            version.warm_up()
            kind = parameter(config, "artifacts", "")
            if kind:
                loader = self.options.artifact_loaders.get(kind)
                if loader is None:
                    raise ConfigError(f"{name}: no loader for artifacts {kind!r} in this server")
                version.artifacts = loader(version_dir)
        except Exception:
            backend.close()
            raise
        return version, config

    def _retire(self, model: _Model, version: ModelVersion, keep_state: bool) -> None:
        if not keep_state:
            model.states[version.version] = (UNLOADING, "")

        async def retire() -> None:
            await version.retire()
            if not keep_state and model.states.get(version.version, ("",))[0] == UNLOADING:
                model.states.pop(version.version, None)
                model.fingerprints.pop(version.version, None)

        task = asyncio.get_running_loop().create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def unload(self, name: str) -> None:
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"model {name!r} is not loaded")
        async with model.lock:
            versions, model.versions, model.latest = model.versions, {}, None
            for version in versions.values():
                self._retire(model, version, keep_state=False)
        await self.wait_retired()
        self._models.pop(name, None)

    async def wait_retired(self) -> None:
        if self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)

    async def close(self) -> None:
        for name in list(self._models):
            await self.unload(name)
