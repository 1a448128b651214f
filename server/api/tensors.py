"""KServe V2 tensors <-> numpy: raw contents (what tritonclient sends) and typed contents.
BYTES tensors travel length-prefixed in raw contents (api/bytes_tensors.py) or as
bytes_contents; INT8 and INT16 typed contents come as int_contents and keep their low bytes,
as Triton narrows them."""
from __future__ import annotations

import math

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from ..models.errors import InvalidArgument
from ..models.datatypes import BY_KSERVE
from ..models.version import ModelVersion
from ..models.bytes_tensors import deserialize_bytes, serialize_bytes
from .shared_memory import SHM_REGION, SharedMemoryRegistry, region_bytes, write_region

# Typed InferTensorContents field per datatype (FP16 and BF16 travel only as raw bytes).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


MAX_ELEMENTS_BYTES = 2**62


def decode_inputs(request: pb.ModelInferRequest, version: ModelVersion,
                  shm: SharedMemoryRegistry | None = None) -> dict[str, np.ndarray]:
    """An input in a shared memory region (its parameters name it) has no raw contents entry."""
    raw = request.raw_input_contents
    in_region = [SHM_REGION in t.parameters for t in request.inputs]
    if raw and len(raw) != in_region.count(False):
        raise InvalidArgument("raw_input_contents", f"has {len(raw)} entries for {in_region.count(False)} inputs "
                                                    f"not in shared memory")
    raw_at = 0
    tensors: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        name = tensor.name
        field = f'input "{name}"'
        spec = version.input_by_name.get(name)
        if spec is None:
            raise InvalidArgument(field, f"model {version.name!r} has no such input (inputs: "
                                         f"{sorted(version.input_by_name)})")
        if name in tensors:
            raise InvalidArgument(field, "given twice")
        if tensor.datatype != spec.datatype.kserve:
            raise InvalidArgument(field, f"datatype {tensor.datatype or '(empty)'} does not match the model's "
                                         f"{spec.datatype.kserve}")
        shape = tuple(tensor.shape)
        if len(shape) != len(spec.dims):  # before any product of the dimensions is taken
            raise InvalidArgument(field, f"shape {list(shape)[:8]} has {len(shape)} dimensions, but the model's "
                                         f"{list(spec.dims)} has {len(spec.dims)}")
        if any(d < 0 for d in shape):
            raise InvalidArgument(field, f"shape {list(shape)} has a negative dimension")
        # numpy refuses an empty array whose other dimensions multiply past its size limit
        if math.prod(d for d in shape if d) * 16 > MAX_ELEMENTS_BYTES:
            raise InvalidArgument(field, f"shape {list(shape)} is larger than any tensor can be")
        count = math.prod(shape)
        if in_region[i]:
            data = region_bytes(tensor.parameters, shm, field)
            tensors[name] = _from_raw(data, shape, count, spec.datatype.kserve, spec.datatype.numpy, field)
        elif raw:
            if tensor.HasField("contents"):  # Triton's words, which its clients look for
                raise InvalidArgument(field, f"contents field must not be specified when using raw_input_contents "
                                             f"for '{name}' for model '{version.name}'")
            tensors[name] = _from_raw(raw[raw_at], shape, count, spec.datatype.kserve, spec.datatype.numpy, field)
            raw_at += 1
        else:
            tensors[name] = _from_contents(tensor, shape, count, spec.datatype.kserve, spec.datatype.numpy, field)
    return tensors


def _from_raw(data: bytes, shape: tuple[int, ...], count: int, datatype: str, dtype: np.dtype,
              field: str) -> np.ndarray:
    if datatype == "BYTES":
        return deserialize_bytes(data, shape, field)
    if len(data) != count * dtype.itemsize:
        raise InvalidArgument(field, f"raw content has {len(data)} bytes, but shape {list(shape)} of "
                                     f"{datatype} needs {count * dtype.itemsize}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _from_contents(tensor: pb.ModelInferRequest.InferInputTensor, shape: tuple[int, ...], count: int,
                   datatype: str, dtype: np.dtype, field: str) -> np.ndarray:
    contents_field = _CONTENTS_FIELD.get(datatype)
    if contents_field is None:
        raise InvalidArgument(field, f"{datatype} must be sent in raw_input_contents")
    values = getattr(tensor.contents, contents_field)
    if len(values) != count:
        raise InvalidArgument(field, f"contents.{contents_field} has {len(values)} values, but shape "
                                     f"{list(shape)} needs {count}")
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    if datatype in ("INT8", "INT16"):  # int32 on the wire: the low bytes, as Triton keeps them
        return np.asarray(values, dtype=np.int32).astype(dtype).reshape(shape)
    if datatype in ("UINT8", "UINT16"):  # uint32 on the wire, likewise
        return np.asarray(values, dtype=np.uint32).astype(dtype).reshape(shape)
    return np.asarray(values, dtype=dtype).reshape(shape)


def requested_outputs(request: pb.ModelInferRequest, version: ModelVersion) -> list[str]:
    if not request.outputs:
        return [o.name for o in version.outputs]
    names = []
    for tensor in request.outputs:
        if tensor.name in names:  # each copy would be written again
            raise InvalidArgument(f'output "{tensor.name}"', "given twice")
        if tensor.name not in version.output_by_name:
            raise InvalidArgument(f'output "{tensor.name}"', f"model {version.name!r} has no such output "
                                                             f"(outputs: {sorted(version.output_by_name)})")
        if "classification" in tensor.parameters:
            raise InvalidArgument(f'output "{tensor.name}"', "the classification extension is not served")
        names.append(tensor.name)
    return names


def encode_response(request: pb.ModelInferRequest, version: ModelVersion, names: list[str],
                    outputs: dict[str, np.ndarray], shm: SharedMemoryRegistry | None = None) -> pb.ModelInferResponse:
    """An output asked for in a shared memory region is written there; its raw contents entry
    stays empty, so the others keep their places."""
    response = pb.ModelInferResponse(model_name=version.name, model_version=version.version_str, id=request.id)
    raw = response.raw_output_contents
    regions = {o.name: o.parameters for o in request.outputs if SHM_REGION in o.parameters}
    for name in names:
        value = outputs[name]
        tensor = response.outputs.add()
        tensor.name = name
        tensor.datatype = BY_KSERVE_OF[value.dtype]
        tensor.shape.extend(value.shape)
        data = serialize_bytes(value) if value.dtype == object else value.tobytes()
        if name in regions:
            write_region(regions[name], shm, data, f'output "{name}"')
            data = b""
        raw.append(data)
    return response


BY_KSERVE_OF = {t.numpy: t.kserve for t in BY_KSERVE.values()}
