"""One table of tensor data types: KServe names, Triton config enums, numpy and ONNX."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DataType:
    kserve: str  # "FP32": the KServe V2 / Triton protocol name
    config: str  # "TYPE_FP32": the config.pbtxt enum name
    numpy: np.dtype
    onnx: str  # "tensor(float)": what onnxruntime reports


_TABLE = [
    DataType("BOOL", "TYPE_BOOL", np.dtype(np.bool_), "tensor(bool)"),
    DataType("UINT8", "TYPE_UINT8", np.dtype(np.uint8), "tensor(uint8)"),
    DataType("UINT16", "TYPE_UINT16", np.dtype(np.uint16), "tensor(uint16)"),
    DataType("UINT32", "TYPE_UINT32", np.dtype(np.uint32), "tensor(uint32)"),
    DataType("UINT64", "TYPE_UINT64", np.dtype(np.uint64), "tensor(uint64)"),
    DataType("INT8", "TYPE_INT8", np.dtype(np.int8), "tensor(int8)"),
    DataType("INT16", "TYPE_INT16", np.dtype(np.int16), "tensor(int16)"),
    DataType("INT32", "TYPE_INT32", np.dtype(np.int32), "tensor(int32)"),
    DataType("INT64", "TYPE_INT64", np.dtype(np.int64), "tensor(int64)"),
    DataType("FP16", "TYPE_FP16", np.dtype(np.float16), "tensor(float16)"),
    DataType("FP32", "TYPE_FP32", np.dtype(np.float32), "tensor(float)"),
    DataType("FP64", "TYPE_FP64", np.dtype(np.float64), "tensor(double)"),
    # variable-length elements: arrays of Python objects (bytes from the wire, str from ONNX
    # Runtime, which carries strings as text)
    DataType("BYTES", "TYPE_STRING", np.dtype(object), "tensor(string)"),
]

BY_KSERVE = {t.kserve: t for t in _TABLE}
BY_CONFIG = {t.config: t for t in _TABLE}
BY_ONNX = {t.onnx: t for t in _TABLE}
BY_NUMPY = {t.numpy: t for t in _TABLE}
