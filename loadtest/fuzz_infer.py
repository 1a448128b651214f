"""ModelInfer requests for the models the server actually holds (learnt from ModelMetadata),
then bent: random batch sizes and shapes, wrong or unknown datatypes, raw contents of the
wrong length or count, typed contents, out-of-range indices, NaN, inputs missing, doubled or
unknown, odd outputs and parameters, unknown models and versions."""
from __future__ import annotations

import random

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from .fuzz_schema import DATATYPES, Vocabulary

NUMPY = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
         "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
         "UINT64": np.uint64, "BOOL": np.bool_}
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _data(rng: np.random.Generator, datatype: str, shape: list[int], hostile: bool) -> np.ndarray:
    dtype = NUMPY.get(datatype, np.float32)
    if np.issubdtype(dtype, np.floating):
        data = rng.standard_normal(shape).astype(dtype)
        if hostile and data.size:
            data.flat[rng.integers(0, data.size, max(1, data.size // 4))] = rng.choice(
                [np.nan, np.inf, -np.inf, np.finfo(dtype).max])
        return data
    if dtype is np.bool_:
        return rng.random(shape) < 0.5
    info = np.iinfo(dtype)
    if hostile:  # out-of-range indices for an embedding lookup, and the type's extremes
        return rng.choice(np.array([info.min, info.max, -1, 10 ** 6 % (int(info.max) + 1), 0], dtype=dtype), shape)
    return rng.integers(0, min(1000, int(info.max)), shape).astype(dtype)


class InferFuzzer:
    """One ModelInfer body per call, from the models in `vocab.metadata`."""

    def __init__(self, vocab: Vocabulary, max_bytes: int) -> None:
        self.vocab = vocab
        self.max_bytes = max_bytes

    def body(self, rng: random.Random, valid: bool = False) -> tuple[bytes, str]:
        """A request for one of the models; with `valid`, one it should answer OK."""
        if not self.vocab.metadata:
            request = pb.ModelInferRequest(model_name=rng.choice(("", "nope", "../model_repo")))
            return request.SerializeToString(), "no model known: unknown model name"
        model = rng.choice(sorted(self.vocab.metadata))
        meta = self.vocab.metadata[model]
        nrng = np.random.default_rng(rng.getrandbits(32))
        batch = rng.choice((1, 2, 7) if valid else (1, 1, 2, 7, 64, 0, 1025))
        hostile = not valid and rng.random() < 0.3
        request = pb.ModelInferRequest(model_name=model, id=f"fuzz-{rng.getrandbits(20)}")
        for tensor in meta.inputs:
            shape = [batch if d == -1 else d for d in tensor.shape]
            data = _data(nrng, tensor.datatype, shape, hostile)
            if data.nbytes > self.max_bytes:
                shape[0] = 1
                data = _data(nrng, tensor.datatype, shape, hostile)
            request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=shape)
            request.raw_input_contents.append(data.tobytes())
        notes = [f"{model} batch {batch}" + (" hostile values" if hostile else "")]
        for _ in range(0 if valid else rng.choice((0, 1, 1, 1, 2))):
            bend = rng.choice(BENDS)
            notes.append(bend(rng, request, meta))
        return request.SerializeToString(), "; ".join(notes)


def _pick(rng: random.Random, request: pb.ModelInferRequest) -> int | None:
    return rng.randrange(len(request.inputs)) if len(request.inputs) else None


def bend_shape(rng, request, meta) -> str:
    i = _pick(rng, request)
    if i is None:
        return "no input to reshape"
    shape = rng.choice(([2 ** 62, 4], [2 ** 31, 2 ** 31, 4], [-1, 4], [0], [], [1, 1, 1, 1, 1], [2 ** 63 - 1],
                        [3, -3], [1, 0, 2 ** 40]))
    del request.inputs[i].shape[:]
    request.inputs[i].shape.extend(shape)
    return f"input {i} shape {shape}"


def bend_datatype(rng, request, meta) -> str:
    i = _pick(rng, request)
    if i is None:
        return "no input"
    datatype = rng.choice(DATATYPES + ("", "FP8", "fp32", "STRING"))
    request.inputs[i].datatype = datatype
    return f"input {i} datatype {datatype!r}"


def bend_raw_length(rng, request, meta) -> str:
    if not request.raw_input_contents:
        return "no raw contents"
    i = rng.randrange(len(request.raw_input_contents))
    raw = request.raw_input_contents[i]
    new = rng.choice((raw[:-1], raw + b"\x00", b"", raw * 2, raw[: len(raw) // 2 + 1], raw + b"\x00" * 3))
    request.raw_input_contents[i] = new
    return f"raw {i}: {len(raw)} -> {len(new)} bytes"


def bend_raw_count(rng, request, meta) -> str:
    if rng.random() < 0.5 and request.raw_input_contents:
        del request.raw_input_contents[-1]
        return "one raw content missing"
    request.raw_input_contents.append(b"\x00" * rng.choice((0, 4, 8)))
    return "one raw content too many"


def bend_typed_contents(rng, request, meta) -> str:
    """Values in InferTensorContents instead of (or beside) raw_input_contents."""
    keep_raw = rng.random() < 0.3
    if not keep_raw:
        del request.raw_input_contents[:]
    for tensor in request.inputs:
        field = rng.choice(list(CONTENTS.values())) if rng.random() < 0.3 else CONTENTS.get(tensor.datatype,
                                                                                            "fp32_contents")
        count = int(np.prod([max(0, min(d, 4096)) for d in tensor.shape])) if tensor.shape else 1
        count = max(0, count + rng.choice((0, 0, 1, -1)))
        target = getattr(tensor.contents, field)
        if field == "bytes_contents":
            target.extend([b"x"] * count)
        elif field == "bool_contents":
            target.extend([True] * count)
        elif field.startswith("fp"):
            target.extend([rng.choice((0.5, float("nan"), float("inf")))] * count)
        elif field.startswith("uint"):
            target.extend([rng.choice((0, 2 ** 32 - 1 if "64" not in field else 2 ** 64 - 1))] * count)
        else:
            target.extend([rng.choice((0, -1, 2 ** 31 - 1 if "64" not in field else 2 ** 63 - 1))] * count)
    return "typed contents" + (" and raw" if keep_raw else "")


def bend_inputs(rng, request, meta) -> str:
    choice = rng.choice(("missing", "doubled", "unknown", "empty name"))
    if choice == "missing" and len(request.inputs):
        del request.inputs[-1]
        if request.raw_input_contents:
            del request.raw_input_contents[-1]
    elif choice == "doubled" and len(request.inputs):
        request.inputs.add().CopyFrom(request.inputs[0])
        if request.raw_input_contents:
            request.raw_input_contents.append(request.raw_input_contents[0])
    else:
        request.inputs.add(name="" if choice == "empty name" else "no_such_input", datatype="FP32", shape=[1])
        if request.raw_input_contents:
            request.raw_input_contents.append(b"\x00" * 4)
    return f"input {choice}"


def bend_outputs(rng, request, meta) -> str:
    names = [o.name for o in meta.outputs] or ["y"]
    choice = rng.choice(("unknown", "doubled", "classification", "binary_data", "all"))
    if choice == "unknown":
        request.outputs.add(name="no_such_output")
    elif choice == "doubled":
        request.outputs.add(name=names[0])
        request.outputs.add(name=names[0])
    elif choice == "classification":
        request.outputs.add(name=names[0]).parameters["classification"].int64_param = rng.choice((1, -1, 2 ** 40))
    elif choice == "binary_data":
        request.outputs.add(name=names[0]).parameters["binary_data"].bool_param = True
    else:
        for name in names:
            request.outputs.add(name=name)
    return f"outputs {choice}"


def bend_parameters(rng, request, meta) -> str:
    key = rng.choice(("timeout", "timeout", "priority", "sequence_id", "binary_data_output", "unknown_param"))
    parameter = request.parameters[key]
    kind = rng.choice(("int64", "int64", "string", "bool", "double"))
    if kind == "int64":
        parameter.int64_param = rng.choice((-1, 0, 1, 2 ** 63 - 1, -(2 ** 63), 10 ** 12))
    elif kind == "string":
        parameter.string_param = rng.choice(("", "1000", "x" * 1000))
    elif kind == "bool":
        parameter.bool_param = True
    else:
        parameter.double_param = rng.choice((float("nan"), 1e300, -1.0))
    return f"parameter {key} {kind}"


def bend_model(rng, request, meta) -> str:
    if rng.random() < 0.5:
        request.model_version = rng.choice(("1", "2", "0", "-1", "abc", "99999999999999999999", " 1"))
        return f"model_version {request.model_version!r}"
    request.model_name = rng.choice(("", "nope", "../model_repo", "demo_risk_mlp/1", "x" * 100_000, "\x00"))
    return f"model_name {request.model_name[:16]!r}"


BENDS = (bend_shape, bend_datatype, bend_raw_length, bend_raw_count, bend_typed_contents, bend_inputs, bend_outputs,
         bend_parameters, bend_model)
