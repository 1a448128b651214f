"""One load of a model's versions: what the repository is told it may do (its options), what
a load built and chose before it is swapped in, and the building of one version (backend,
completed config, warm-up, artifacts), blocking, run in a loader thread."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from .config import ConfigError, batching_policy, complete_io, instance_kind, parameter
from .errors import quote
from .onnx_backend import OnnxRuntimeBackend, choose_providers
from .production import Production
from .retry import DEFAULT_FIRST_RETRY_S, DEFAULT_MAX_RETRY_S
from .response_cache import ResponseCache
from .sequence_config import check_sequence_io, sequence_spec
from .triton_backend import NAME_PARAMETER as REMOTE_NAME
from .triton_backend import URL_PARAMETER as REMOTE_URL
from .triton_backend import RemoteTritonBackend
from .version import ModelVersion


@dataclass(frozen=True)
class RepositoryOptions:
    device: str = "auto"  # auto | cpu | cuda: the execution provider preference
    # Loaders of what a version ships beside its model, by the config.pbtxt parameter
    # `artifacts` (e.g. "recommend": embeddings and an ANN index): loader(version_dir) -> object,
    # run in the loading thread, so a version and its artifacts swap in as one unit.
    artifact_loaders: dict = field(default_factory=dict)
    # An unchanged version that failed to build is tried again by a poll after retry_first_s,
    # the wait doubling on each failure up to retry_max_s; changed files are tried at once.
    retry_first_s: float = DEFAULT_FIRST_RETRY_S
    retry_max_s: float = DEFAULT_MAX_RETRY_S
    # the server's response cache, for models whose config enables it (None: no budget given)
    response_cache: ResponseCache | None = None


@dataclass
class LoadAttempt:
    """One load's outcome, before it is swapped in."""

    chosen: dict[int, ModelVersion] = field(default_factory=dict)  # to serve: new builds and unchanged ones
    built: dict[int, ModelVersion] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)  # version -> reason (this load's or a remembered one)
    tried: set[int] = field(default_factory=set)  # versions this load built or tried to
    prints: dict[int, str] = field(default_factory=dict)
    pointer: Production | None = None
    primary: int | None = None  # under a pointer: the production version that loaded
    roles: dict[int, str] = field(default_factory=dict)  # under a pointer: why a non-primary version is loaded


def load_error(name: str, attempt: LoadAttempt, serving: dict[int, ModelVersion]) -> str:
    if not attempt.failed:
        return ""
    parts = "; ".join(f"version {v}: {reason}" for v, reason in sorted(attempt.failed.items(), reverse=True))
    tail = f"serving version {', '.join(map(str, sorted(serving)))}" if serving else "no version of it serves"
    return f"model {quote(name)} failed to load {parts} ({tail})"


def build_version(name: str, number: int, version_dir: Path, config: mc.ModelConfig,
                  options: RepositoryOptions) -> ModelVersion:
    """Blocking: build the backend, complete and check the config (a copy: each version
    completes it from its own model file), warm up."""
    config = copy.deepcopy(config)
    sequences = sequence_spec(config)
    policy = (batching_policy(config, sequences.queue_delay_s, sequences.preferred_batch_sizes) if sequences
              else batching_policy(config))
    if sequences is not None and config.response_cache.enable:  # an answer depends on the sequence's past
        raise ConfigError(f"{name}: response_cache cannot be enabled on a sequence model")
    if config.response_cache.enable and options.response_cache is None:  # refused rather than never caching
        raise ConfigError(f"{name}: response_cache is enabled but the server has no cache: start it with "
                          f"--response-cache-bytes N ([server] response_cache_bytes)")
    remote = parameter(config, REMOTE_URL, "")
    if remote:
        backend = RemoteTritonBackend(remote, parameter(config, REMOTE_NAME, name), str(number),
                                      policy.instance_count)
    else:
        backend = OnnxRuntimeBackend(
            version_dir / config.default_model_filename,
            instance_count=policy.instance_count,
            providers=choose_providers(instance_kind(config), options.device),
            intra_op_threads=int(parameter(config, "intra_op_thread_count", "1")),
            inter_op_threads=int(parameter(config, "inter_op_thread_count", "1")),
        )
    try:
        hidden = frozenset(sequences.hidden_inputs) | frozenset(sequences.state_outputs) if sequences else frozenset()
        complete_io(config, backend.inputs, backend.outputs, hidden)
        if sequences is not None:
            check_sequence_io(sequences, backend.inputs, backend.outputs)
        version = ModelVersion(name, number, version_dir, config, backend, policy, sequences)
        if config.response_cache.enable:
            version.cache = options.response_cache
        version.warm_up()
        kind = parameter(config, "artifacts", "")
        if kind:
            loader = options.artifact_loaders.get(kind)
            if loader is None:
                raise ConfigError(f"{name}: no loader for artifacts {kind!r} in this server")
            version.artifacts = loader(version_dir)
    except Exception:
        backend.close()
        raise
    return version

