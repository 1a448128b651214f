"""config.pbtxt: parsed with protobuf text_format into tritonclient's ModelConfig, completed
from the model file where it is silent, and turned into the plain policies the batcher and
the backends run on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from .errors import InvalidArgument
from .config_served import unserved_fields
from .datatypes import BY_CONFIG, DataType

CONFIG_FILE = "config.pbtxt"
MAX_PRIORITY_LEVELS = 64
ONNX_PLATFORM = "onnxruntime_onnx"
ONNX_BACKEND = "onnxruntime"


class ConfigError(ValueError):
    """A config.pbtxt that cannot be served; the message says where and why."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as clients see it: dims include the batch dim (-1) when the
    model batches."""

    name: str
    datatype: DataType
    dims: tuple[int, ...]

    def check_shape(self, shape: tuple[int, ...], field: str) -> None:
        if len(shape) != len(self.dims) or any(d != -1 and d != s for d, s in zip(self.dims, shape)):
            raise InvalidArgument(field, f"shape {list(shape)} does not match the model's {list(self.dims)}")
        if any(s < 0 for s in shape):
            raise InvalidArgument(field, f"shape {list(shape)} has a negative dimension")


@dataclass(frozen=True)
class BatchingPolicy:
    """The scheduling part of config.pbtxt, in seconds and plain numbers."""

    max_batch_size: int  # 0: the model does not batch; each request runs alone
    dynamic: bool  # dynamic_batching present: requests are combined
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_s: float
    max_queue_size: int  # 0: the batcher's default bound (batcher.default_queue_size)
    queue_timeout_s: float | None  # default_timeout_microseconds with timeout_action REJECT
    allow_timeout_override: bool
    instance_count: int
    priority_levels: int = 0  # dynamic_batching priority_levels: the queue's levels, 1 the highest
    default_priority_level: int = 0  # the level of a request that names none

    @property
    def target_rows(self) -> int:
        """Rows at which a batch leaves without waiting out the queue delay."""
        if not self.dynamic or self.max_batch_size == 0:
            return 1
        if self.preferred_batch_sizes:
            return max(self.preferred_batch_sizes)
        return self.max_batch_size


def parse_config_text(text: str, source: str) -> mc.ModelConfig:
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    return config


def load_config(model_dir: Path) -> mc.ModelConfig:
    """Read <model>/config.pbtxt (an absent file means an empty config, completed later)."""
    path = model_dir / CONFIG_FILE
    config = parse_config_text(path.read_text(), str(path)) if path.exists() else mc.ModelConfig()
    return checked_config(config, model_dir, str(path))


def override_config(text: str, model_dir: Path) -> mc.ModelConfig:
    """A RepositoryModelLoad's `config` parameter: the model's config as JSON (Triton's
    override), checked as config.pbtxt is."""
    config = mc.ModelConfig()
    try:
        json_format.Parse(text, config)
    except json_format.ParseError as exc:
        raise ConfigError(f"Invalid config override: {exc}") from None
    return checked_config(config, model_dir, "the config override")


def checked_config(config: mc.ModelConfig, model_dir: Path, source: str) -> mc.ModelConfig:
    path = source
    if config.name and config.name != model_dir.name:
        raise ConfigError(f"{path}: name {config.name!r} does not match the folder {model_dir.name!r}")
    config.name = model_dir.name
    unserved = unserved_fields(config)
    if unserved:
        raise ConfigError(f"{path}: {', '.join(unserved)} {'is' if len(unserved) == 1 else 'are'} not served by "
                          f"Hanzo: remove {'it' if len(unserved) == 1 else 'them'} (docs/triton.md says what is "
                          f"served)")
    if not config.platform and not config.backend:
        config.backend = ONNX_BACKEND
    if config.platform and config.platform != ONNX_PLATFORM:
        raise ConfigError(f"{path}: platform {config.platform!r} is not served; use {ONNX_PLATFORM!r}")
    if config.backend and config.backend != ONNX_BACKEND:
        raise ConfigError(f"{path}: backend {config.backend!r} is not served; use {ONNX_BACKEND!r}")
    if not config.default_model_filename:
        config.default_model_filename = "model.onnx"
    if config.max_batch_size < 0:
        raise ConfigError(f"{path}: max_batch_size must be >= 0, not {config.max_batch_size}")
    return config


def select_versions(config: mc.ModelConfig, available: list[int]) -> list[int]:
    """The versions version_policy asks for, among the numeric folders present."""
    available = sorted(available)
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return available
    if which == "specific":
        wanted = set(policy.specific.versions)
        missing = wanted - set(available)
        if missing:
            raise ConfigError(f"{config.name}: version_policy asks for missing versions {sorted(missing)}")
        return sorted(wanted)
    count = policy.latest.num_versions if which == "latest" and policy.latest.num_versions > 0 else 1
    return available[-count:]


def version_candidates(config: mc.ModelConfig, available: list[int]) -> tuple[list[int], int]:
    """The versions to try, in order, and how many of them to serve. Under version_policy
    latest (the default) every version is a candidate, newest first, so a newest version
    that fails to load falls back to the next older one that loads; all and specific name
    their versions, and a failed one is not replaced by another."""
    which = config.version_policy.WhichOneof("policy_choice")
    if which in ("all", "specific"):
        wanted = select_versions(config, available)
        return wanted, len(wanted)
    count = len(select_versions(config, available))
    return sorted(available, reverse=True), count


def complete_io(config: mc.ModelConfig, model_inputs: list[TensorSpec], model_outputs: list[TensorSpec],
                hidden: frozenset[str] = frozenset()) -> None:
    """Fill inputs/outputs the config leaves out from the model, and check the ones it states.

    `model_inputs`/`model_outputs` carry the model file's full dims (batch dim included);
    `hidden` names the model inputs and outputs the server feeds and keeps (a sequence model's
    controls and state), never the clients'.
    """
    batched = config.max_batch_size > 0
    for kind, declared, actual in (("input", config.input, model_inputs), ("output", config.output, model_outputs)):
        actual = [t for t in actual if t.name not in hidden]
        by_name = {t.name: t for t in actual}
        if batched:
            for t in actual:
                if not t.dims or t.dims[0] not in (-1,):
                    raise ConfigError(
                        f"{config.name}: max_batch_size {config.max_batch_size} needs a variable first "
                        f"dimension, but {kind} {t.name!r} has dims {list(t.dims)}"
                    )
        if len(declared) == 0:
            for t in actual:
                entry = declared.add()
                entry.name = t.name
                entry.data_type = mc.DataType.Value(t.datatype.config)
                entry.dims.extend(t.dims[1:] if batched else t.dims)
            continue
        for entry in declared:
            if entry.name not in by_name:
                raise ConfigError(
                    f"{config.name}: {kind} {entry.name!r} is not in the model (it has {sorted(by_name)})")
            model = by_name[entry.name]
            if mc.DataType.Name(entry.data_type) != model.datatype.config:
                raise ConfigError(
                    f"{config.name}: {kind} {entry.name!r} is {mc.DataType.Name(entry.data_type)} in config.pbtxt "
                    f"but {model.datatype.config} in the model"
                )
            model_dims = model.dims[1:] if batched else model.dims
            if entry.HasField("reshape"):  # clients see entry.dims; the model, reshape.shape
                _check_reshape(config.name, kind, entry)
                stated, where = list(entry.reshape.shape), "reshape"
            else:
                stated, where = list(entry.dims), "dims"
            if len(stated) != len(model_dims) or any(m != -1 and d != m for d, m in zip(stated, model_dims)):
                raise ConfigError(
                    f"{config.name}: {kind} {entry.name!r} has {where} {stated} in config.pbtxt "
                    f"but {list(model_dims)} in the model"
                )
        if kind == "input":
            missing = set(by_name) - {e.name for e in declared}
            if missing:
                raise ConfigError(f"{config.name}: model inputs {sorted(missing)} are missing from config.pbtxt")


def _check_reshape(model: str, kind: str, entry) -> None:
    dims, shape = list(entry.dims), list(entry.reshape.shape)
    if any(d < 0 for d in dims + shape):
        raise ConfigError(f"{model}: {kind} {entry.name!r} reshape: variable dimensions are not served in a reshape "
                          f"(dims {dims}, reshape {shape})")
    if math.prod(dims) != math.prod(shape):
        raise ConfigError(f"{model}: {kind} {entry.name!r} reshape {shape} holds {math.prod(shape)} elements, but "
                          f"dims {dims} hold {math.prod(dims)}")


def reshapes(config: mc.ModelConfig) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """(input name -> the model's dims, output name -> the clients' dims), batch dim left out,
    for the tensors config.pbtxt reshapes."""
    inputs = {e.name: tuple(e.reshape.shape) for e in config.input if e.HasField("reshape")}
    outputs = {e.name: tuple(e.dims) for e in config.output if e.HasField("reshape")}
    return inputs, outputs


def io_specs(config: mc.ModelConfig) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs as clients see them (batch dim -1 first when the model batches)."""
    prefix = (-1,) if config.max_batch_size > 0 else ()

    def spec(entry) -> TensorSpec:
        name = mc.DataType.Name(entry.data_type)
        if name not in BY_CONFIG:
            raise ConfigError(f"{config.name}: {entry.name!r} has data type {name}, which is not served")
        return TensorSpec(entry.name, BY_CONFIG[name], prefix + tuple(int(d) for d in entry.dims))

    return [spec(e) for e in config.input], [spec(e) for e in config.output]


def batching_policy(config: mc.ModelConfig, sequence_delay_s: float = 0.0,
                    sequence_preferred: tuple[int, ...] = ()) -> BatchingPolicy:
    """`sequence_delay_s`, `sequence_preferred`: a sequence model's strategy (models/sequence_config.py),
    whose requests from different sequences batch together."""
    dyn = config.dynamic_batching if config.HasField("dynamic_batching") else None
    count = sum(max(g.count, 1) for g in config.instance_group) if len(config.instance_group) else 1
    if config.HasField("sequence_batching"):
        return BatchingPolicy(config.max_batch_size, config.max_batch_size > 0, sequence_preferred, sequence_delay_s,
                              0, None, False, count)
    if dyn is None:
        return BatchingPolicy(config.max_batch_size, False, (), 0.0, 0, None, False, count)
    for size in dyn.preferred_batch_size:
        if size <= 0 or size > config.max_batch_size:
            raise ConfigError(
                f"{config.name}: preferred_batch_size {size} must be in 1..max_batch_size ({config.max_batch_size})"
            )
    queue = dyn.default_queue_policy
    timeout = None
    if queue.default_timeout_microseconds > 0 and queue.timeout_action == mc.ModelQueuePolicy.REJECT:
        timeout = queue.default_timeout_microseconds / 1e6
    return BatchingPolicy(
        max_batch_size=config.max_batch_size,
        dynamic=config.max_batch_size > 0,
        preferred_batch_sizes=tuple(sorted(int(s) for s in dyn.preferred_batch_size)),
        max_queue_delay_s=dyn.max_queue_delay_microseconds / 1e6,
        max_queue_size=int(queue.max_queue_size),
        queue_timeout_s=timeout,
        allow_timeout_override=bool(queue.allow_timeout_override),
        instance_count=count,
        priority_levels=int(dyn.priority_levels),
        default_priority_level=_default_level(config.name, dyn),
    )


def _default_level(model: str, dyn: mc.ModelDynamicBatching) -> int:
    levels, default = int(dyn.priority_levels), int(dyn.default_priority_level)
    if levels > MAX_PRIORITY_LEVELS:
        raise ConfigError(f"{model}: dynamic_batching.priority_levels {levels} is more than the {MAX_PRIORITY_LEVELS} "
                          f"served (each level is a queue of its own)")
    if not levels:
        if default:
            raise ConfigError(f"{model}: dynamic_batching.default_priority_level {default} needs priority_levels")
        return 0
    if not 0 < default <= levels:
        raise ConfigError(f"{model}: dynamic_batching.default_priority_level must be in 1..priority_levels "
                          f"({levels}), not {default}")
    return default


def parameter(config: mc.ModelConfig, key: str, default: str) -> str:
    """A config.pbtxt `parameters { key: ... value: { string_value: ... } }` entry."""
    if key in config.parameters:
        return config.parameters[key].string_value
    return default


def instance_kind(config: mc.ModelConfig) -> str:
    """KIND_CPU, KIND_GPU or KIND_AUTO for the model's instance groups (one kind per model)."""
    kinds = {mc.ModelInstanceGroup.Kind.Name(g.kind) for g in config.instance_group} or {"KIND_AUTO"}
    if len(kinds) > 1:
        raise ConfigError(f"{config.name}: instance groups of several kinds {sorted(kinds)} are not served")
    return kinds.pop()
