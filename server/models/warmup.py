"""config.pbtxt `model_warmup`: the samples a version runs before it serves, as Triton runs them.

Each sample names every model input with its data type and dims (the batch dim apart) and its
data: `zero_data`, `random_data` (seeded: the same every load), or `input_data_file`, a file in
the model's `warmup/` folder holding one sample's raw bytes in row-major order (a BYTES
element as its 4-byte little-endian length, then its bytes). The sample is repeated
`batch_size` times along the batch dim and run `count` times (at least once) on every instance.
The file is named, never a path: a name with a separator, or one starting with a dot, is
refused. A sample that does not fit the model, or that the model fails on, fails the load,
naming the sample and the input."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from .bytes_tensors import deserialize_bytes
from .config import ConfigError, TensorSpec
from .errors import HanzoError

WARMUP_FOLDER = "warmup"
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def warmup_feeds(sample: mc.ModelWarmup, index: int, inputs: dict[str, TensorSpec], batched: bool,
                 model_dir: Path) -> tuple[dict[str, np.ndarray], int]:
    """One sample's tensors, as clients would send them (batch dim first where the model
    batches), and its batch size."""
    where = f"model_warmup[{index}] ({sample.name or 'unnamed'})"
    rows = sample.batch_size
    if batched and rows < 1:
        raise ConfigError(f"{where}: batch_size must be at least 1 for a model that batches")
    if not batched and rows != 0:
        raise ConfigError(f"{where}: batch_size must be 0 for a model that does not batch")
    missing = sorted(set(inputs) - set(sample.inputs))
    unknown = sorted(set(sample.inputs) - set(inputs))
    if missing or unknown:
        raise ConfigError(f"{where}: inputs {missing} missing and {unknown} not the model's: a sample gives every "
                          f"input")
    feeds = {}
    for name, given in sample.inputs.items():
        spec, field = inputs[name], f"{where} input {name!r}"
        if mc.DataType.Name(given.data_type) != spec.datatype.config:
            raise ConfigError(f"{field}: {mc.DataType.Name(given.data_type)}, but the model's is "
                              f"{spec.datatype.config}")
        model_dims = spec.dims[1:] if batched else spec.dims
        dims = tuple(int(d) for d in given.dims)
        if len(dims) != len(model_dims) or any(d < 0 or (m != -1 and d != m) for d, m in zip(dims, model_dims)):
            raise ConfigError(f"{field}: dims {list(dims)} do not fit the model's {list(model_dims)}")
        one = _sample_data(given, spec, dims, model_dir, field)
        feeds[name] = np.repeat(one[None], rows, axis=0) if batched else one
    return feeds, max(rows, 1)


def _sample_data(given: mc.ModelWarmup.Input, spec: TensorSpec, dims: tuple[int, ...], model_dir: Path,
                 field: str) -> np.ndarray:
    dtype = spec.datatype.numpy
    bytes_type = spec.datatype.kserve == "BYTES"
    which = given.WhichOneof("input_data_type")
    if which == "input_data_file":
        name = given.input_data_file
        if not FILE_NAME.match(name):
            raise ConfigError(f"{field}: input_data_file {name!r} must be a file name in the model's "
                              f"{WARMUP_FOLDER}/ folder, not a path")
        path = model_dir / WARMUP_FOLDER / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{field}: input_data_file {path}: {exc.strerror}") from None
        if bytes_type:
            try:
                return deserialize_bytes(data, dims, field)
            except HanzoError as exc:
                raise ConfigError(f"{field}: input_data_file {name}: {exc.message}") from None
        if len(data) != math.prod(dims) * dtype.itemsize:
            raise ConfigError(f"{field}: input_data_file {name} has {len(data)} bytes, but dims {list(dims)} of "
                              f"{spec.datatype.kserve} need {math.prod(dims) * dtype.itemsize}")
        return np.frombuffer(data, dtype=dtype).reshape(dims)
    if bytes_type:  # zero data: empty strings; random data: decimal digits, text any model reads
        if which == "random_data":
            digits = np.random.default_rng(0).integers(0, 10, math.prod(dims))
            return np.array([str(d).encode() for d in digits], dtype=object).reshape(dims)
        return np.full(dims, b"", dtype=object)
    if which == "random_data":
        rng = np.random.default_rng(0)
        if np.issubdtype(dtype, np.floating):
            return rng.standard_normal(dims).astype(dtype)
        if dtype == np.bool_:
            return rng.random(dims) < 0.5
        return rng.integers(0, 2, dims).astype(dtype)  # small: an index input stays in its table
    return np.zeros(dims, dtype=dtype)
