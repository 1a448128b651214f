"""A loaded model version: what its version folder ships (`path`), its config, backend,
batcher and statistics, loaded and swapped as one unit."""
from __future__ import annotations

import logging
import time
from typing import Any
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from .errors import InvalidArgument, quote
from .backend import Backend
from .batcher import DynamicBatcher
from .config import BatchingPolicy, ConfigError, TensorSpec, io_specs, parameter, reshapes
from .response_cache import ResponseCache, request_key
from .sequence_config import SequenceSpec
from .sequences import SequenceFlags, Sequencer
from .statistics import ModelStatistics
from .warmup import warmup_feeds

log = logging.getLogger(__name__)


class ModelVersion:
    def __init__(self, name: str, version: int, path: Path, config: mc.ModelConfig, backend: Backend,
                 policy: BatchingPolicy, sequences: SequenceSpec | None = None) -> None:
        self.name = name
        self.version = version
        self.version_str = str(version)
        self.path = path
        self.config = config
        self.backend = backend
        self.policy = policy
        self.inputs, self.outputs = io_specs(config)
        self.input_by_name: dict[str, TensorSpec] = {t.name: t for t in self.inputs}
        self.output_by_name: dict[str, TensorSpec] = {t.name: t for t in self.outputs}
        self.stats = ModelStatistics()
        self.batcher = DynamicBatcher(f"{name}:{version}", policy, backend.run, self.stats,
                                      getattr(backend, "run_async", None))
        self.artifacts: Any = None  # what the version ships beside the model (repository artifact loaders)
        self.cache: ResponseCache | None = None  # config.pbtxt response_cache { enable: true }
        # config.pbtxt sequence_batching: requests in order per sequence, fed controls and state
        self.sequencer = Sequencer(sequences, self.batcher.max_queue_size) if sequences is not None else None
        # config.pbtxt reshape: inputs to the model's dims, outputs back to the clients' (batch dim apart)
        self._reshape_in, self._reshape_out = reshapes(config)
        # (input, low, high, table): integer inputs that index a table of the model, whose
        # values must lie in [low, high) or the backend fails the whole batch.
        self.index_ranges: list[tuple[str, int, int, str]] = [
            (name, r.low, r.high, r.table) for name, r in getattr(backend, "index_ranges", {}).items()
            if name in self.input_by_name]
        # (input, dimension, longest, table): lengths that slice a fixed table of the model
        self.dim_limits: list[tuple[str, int, int, str]] = [
            (name, dim, longest, table) for name, dims in getattr(backend, "dim_limits", {}).items()
            if name in self.input_by_name for dim, (longest, table) in dims.items()]
        # ONNX Runtime's Python API carries string tensors as text: BYTES elements are decoded
        # (UTF-8) per request, so one undecodable element fails its own request, not a batch
        self._text_strings = bool(getattr(backend, "text_strings", False))
        # named dimensions several inputs share, each with its (input, dimension) places
        self.shared_dims = [(label, places) for label, places in getattr(backend, "shared_dims", [])
                            if all(name in self.input_by_name for name, _ in places)]

    def check_inputs(self, tensors: dict[str, np.ndarray]) -> int:
        """Validate tensors against the model; returns the batch size (1 for models that
        do not batch). Raises InvalidArgument naming the field."""
        for name in tensors:
            if name not in self.input_by_name:
                raise InvalidArgument(f'input "{name}"', f"model {self.name!r} has no such input "
                                                         f"(inputs: {sorted(self.input_by_name)})")
        rows = 1
        first: str | None = None
        for spec in self.inputs:
            field = f'input "{spec.name}"'
            value = tensors.get(spec.name)
            if value is None:
                raise InvalidArgument(field, f"missing (model {self.name!r} needs {sorted(self.input_by_name)})")
            if value.dtype != spec.datatype.numpy:
                raise InvalidArgument(field, f"datatype {value.dtype} does not match the model's "
                                             f"{spec.datatype.kserve}")
            spec.check_shape(value.shape, field)
            if value.dtype == object and self._text_strings:
                tensors[spec.name] = as_text(value, field)
            if self.policy.max_batch_size:
                batch = value.shape[0]
                if first is None:
                    first, rows = spec.name, batch
                elif batch != rows:
                    raise InvalidArgument(field, f"batch size {batch} differs from {rows} of input {first!r}")
        if self.policy.max_batch_size:
            if rows < 1:
                raise InvalidArgument(f'input "{first}"', "batch size 0: send at least one row")
            if rows > self.policy.max_batch_size:
                raise InvalidArgument(f'input "{first}"', f"batch size {rows} exceeds max_batch_size "
                                                          f"{self.policy.max_batch_size}")
        for name, low, high, table in self.index_ranges:
            self._check_range(name, tensors[name], low, high, table)
        for name, dim, longest, table in self.dim_limits:
            shape = tensors[name].shape
            if dim < len(shape) and shape[dim] > longest:
                raise InvalidArgument(f'input "{name}"', f"dimension {dim} is {shape[dim]}, longer than the "
                                                         f"{longest} rows of the model's table {quote(table)}")
        for label, places in self.shared_dims:
            self._check_shared(tensors, label, places)
        return rows

    @staticmethod
    def _check_shared(tensors: dict[str, np.ndarray], label: str, places: list[tuple[str, int]]) -> None:
        first, first_dim = places[0]
        size = tensors[first].shape[first_dim]
        for name, dim in places[1:]:
            if tensors[name].shape[dim] != size:
                raise InvalidArgument(f'input "{name}"', f"dimension {dim} ({label}) is {tensors[name].shape[dim]}, "
                                                         f"but {size} in input {first!r}: the model needs them equal")

    @staticmethod
    def _check_range(name: str, value: np.ndarray, low: int, high: int, table: str) -> None:
        if value.size == 0:
            return
        smallest, largest = int(value.min()), int(value.max())
        if smallest >= low and largest < high:
            return
        got = f"max {largest}" if largest >= high else f"min {smallest}"
        raise InvalidArgument(f'input "{name}"', f"values must lie in [{low}, {high}), the rows of the model's "
                                                 f"table {quote(table)}; got {got}")

    async def infer(self, tensors: dict[str, np.ndarray], deadline: float | None = None,
                    queue_timeout_s: float | None = None, sequence: SequenceFlags | None = None,
                    priority: int = 0) -> dict[str, np.ndarray]:
        """Validate, then run through the batcher. `deadline` in time.monotonic() seconds;
        `sequence`: the request's place in its sequence (sequence models only); `priority`:
        its level (1 the highest; 0 the model's default)."""
        if sequence is not None and self.sequencer is None:
            raise InvalidArgument('parameters["sequence_id"]', f"model {self.name!r} is not a sequence model (its "
                                                               f"config.pbtxt has no sequence_batching)")
        level = self.batcher.level(priority)
        rows = self.check_inputs(tensors)
        if self._reshape_in:
            tensors = self._model_shaped(tensors, rows)
        if self.sequencer is not None:
            outputs = await self.sequencer.run(sequence, tensors, rows, lambda feeds: self.batcher.infer(
                feeds, rows, deadline, queue_timeout_s, level))
        else:
            outputs = await self._answer(tensors, rows, deadline, queue_timeout_s, level)
        if self._reshape_out:
            lead = (rows,) if self.policy.max_batch_size else ()
            outputs = {name: value.reshape(lead + self._reshape_out[name]) if name in self._reshape_out else value
                       for name, value in outputs.items()}
        return outputs

    def _model_shaped(self, tensors: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        lead = (rows,) if self.policy.max_batch_size else ()
        return {name: value.reshape(lead + self._reshape_in[name]) if name in self._reshape_in else value
                for name, value in tensors.items()}

    async def _answer(self, tensors: dict[str, np.ndarray], rows: int, deadline: float | None,
                      queue_timeout_s: float | None, level: int) -> dict[str, np.ndarray]:
        """From the response cache where the model enables it, else through the batcher."""
        if self.cache is None:
            return await self.batcher.infer(tensors, rows, deadline, queue_timeout_s, level)
        started = time.perf_counter_ns()
        key = request_key(self.name, self.version, tensors)
        found = self.cache.get(key)
        if found is not None:  # a success, as Triton counts it, without a batch
            took = time.perf_counter_ns() - started
            self.stats.cache_hit.add(took)
            self.stats.success.add(took)
            return found
        looked = time.perf_counter_ns() - started
        outputs = await self.batcher.infer(tensors, rows, deadline, queue_timeout_s, level)
        started = time.perf_counter_ns()
        self.cache.put(key, outputs)
        self.stats.cache_miss.add(looked + time.perf_counter_ns() - started)
        return outputs

    def warm_up(self) -> None:
        """Run every instance at batch 1 and at max batch, so the first real request pays no
        allocation or kernel selection, then choose where batches run. Blocking: call from a
        loader thread."""
        self._configured_warmup()
        sizes = sorted({1, max(self.policy.max_batch_size, 1)})
        slowest_ns = 0
        for size in sizes:
            feeds = {}
            for spec in self.inputs:
                shape = tuple(size if i == 0 and self.policy.max_batch_size else (d if d > 0 else 1)
                              for i, d in enumerate(spec.dims))
                feeds[spec.name] = np.full(shape, "0" if self._text_strings else b"0", dtype=object) \
                    if spec.datatype.kserve == "BYTES" else np.zeros(shape, dtype=spec.datatype.numpy)
            if self._reshape_in:
                feeds = self._model_shaped(feeds, size if self.policy.max_batch_size else 1)
            if self.sequencer is not None:
                feeds.update(self.sequencer.spec.warmup_feeds(size))
            for instance in range(max(self.policy.instance_count, 1)):
                try:
                    self.backend.run(instance, feeds)
                except Exception as exc:  # noqa: BLE001
                    if not any(spec.datatype.kserve == "BYTES" for spec in self.inputs):
                        raise
                    # text made up for a warm-up may mean nothing to the model ("0" where it
                    # parses JSON): served cold, not refused
                    log.info("model version served without warm-up", extra={
                        "model": self.name, "model_version": self.version_str, "reason": f"{type(exc).__name__}"})
                    self.batcher.inline = self._runs_inline(1 << 62)  # speed unknown: auto runs it on a thread
                    return
                start = time.perf_counter_ns()
                self.backend.run(instance, feeds)
                slowest_ns = max(slowest_ns, time.perf_counter_ns() - start)
        self.batcher.inline = self._runs_inline(slowest_ns)
        log.info("model version warm", extra={"model": self.name, "model_version": self.version_str,
                                              "max_batch_us": slowest_ns // 1000, "inline": self.batcher.inline})

    def _configured_warmup(self) -> None:
        """config.pbtxt model_warmup: each sample `count` times on every instance (models/warmup.py)."""
        batched = bool(self.policy.max_batch_size)
        for i, sample in enumerate(self.config.model_warmup):
            feeds, rows = warmup_feeds(sample, i, self.input_by_name, batched, self.path.parent)
            if self._text_strings:
                feeds = {name: as_text(v, name) if v.dtype == object else v for name, v in feeds.items()}
            if self._reshape_in:
                feeds = self._model_shaped(feeds, rows)
            if self.sequencer is not None:
                feeds.update(self.sequencer.spec.warmup_feeds(rows))
            for _ in range(max(sample.count, 1)):
                for instance in range(max(self.policy.instance_count, 1)):
                    try:
                        self.backend.run(instance, feeds)
                    except Exception as exc:  # noqa: BLE001 - the model's own failure, said in the load's reason
                        raise ConfigError(f"model_warmup[{i}] ({sample.name or 'unnamed'}): the model failed on it: "
                                          f"{type(exc).__name__}: {str(exc)[:300]}") from None
        if len(self.config.model_warmup):
            log.info("model warm-up samples run", extra={"model": self.name, "model_version": self.version_str,
                                                          "samples": [s.name for s in self.config.model_warmup]})

    def _runs_inline(self, max_batch_ns: int) -> bool:
        """config.pbtxt parameters: execution = auto | inline | thread; inline_max_us (auto:
        inline when one instance runs a full batch faster than this, default 1000)."""
        if getattr(self.backend, "run_async", None) is not None:
            return False  # batches wait on the network as tasks, never on the loop's own time
        mode = parameter(self.config, "execution", "auto")
        if mode not in ("auto", "inline", "thread"):
            raise ConfigError(f"{self.name}: parameter execution must be auto, inline or thread, not {mode!r}")
        if mode != "auto":
            return mode == "inline"
        limit_us = int(parameter(self.config, "inline_max_us", "1000"))
        return self.policy.instance_count <= 1 and max_batch_ns < limit_us * 1000

    async def retire(self) -> None:
        """Stop taking requests, let the queued and running ones finish, free the backend."""
        await self.batcher.close()
        self.backend.close()
        log.info("model version retired", extra={"model": self.name, "model_version": self.version_str})


def as_text(value: np.ndarray, field: str) -> np.ndarray:
    """A BYTES tensor's elements as str (UTF-8), refused naming the element that is not."""
    flat = value.reshape(-1)
    out = np.empty(len(flat), dtype=object)
    for i, element in enumerate(flat):
        if isinstance(element, str):
            out[i] = element
            continue
        try:
            if not isinstance(element, bytes):
                raise TypeError
            out[i] = element.decode("utf-8")
        except (UnicodeDecodeError, TypeError):
            raise InvalidArgument(field, f"element {i} is not UTF-8 text: this model runs on ONNX Runtime, which "
                                         f"takes string tensors as text") from None
    return out.reshape(value.shape)
