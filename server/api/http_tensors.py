"""KServe V2 HTTP/REST inference bodies <-> the gRPC messages the server already serves.

A request is JSON, optionally followed by Triton's binary tensor data (the JSON's length in the
`Inference-Header-Content-Length` header, then each binary input's bytes in input order, as
`parameters.binary_data_size` says). Every input becomes raw contents of a ModelInferRequest,
so one decoder (api/tensors.py) checks tensors from both ports. An answer's output is JSON
`data`, or binary when the request asks (`parameters.binary_data` per output, or
`binary_data_output` for all), the bytes after the JSON in output order."""
from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from tritonclient.grpc import service_pb2 as pb

from ..models.datatypes import BY_KSERVE
from ..models.errors import InvalidArgument
from ..models.bytes_tensors import as_bytes, deserialize_bytes, serialize_bytes
from .shared_memory import SHM_OFFSET, SHM_REGION, SHM_SIZE

HEADER_LENGTH = "Inference-Header-Content-Length"
_RESERVED = ("headers",)
UINT64_MAX = (1 << 64) - 1
MAX_DIMS = 64  # numpy's own limit; a model's rank is checked after
MAX_NESTING = 64  # JSON arrays within arrays in `data`
INT64_MAX = (1 << 63) - 1
IN_REGION = "region"  # an output asked for in a shared memory region
_INTEGER_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})


def _object(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidArgument(field, f"must be a JSON object, not {type(value).__name__}")
    return value


def _list(value: Any, field: str) -> list:
    if not isinstance(value, list):
        raise InvalidArgument(field, f"must be a JSON array, not {type(value).__name__}")
    return value


def parse_request(body: bytes, header_length: int | None, model: str, version: str) -> tuple[pb.ModelInferRequest,
                                                                                          dict[str, bool]]:
    """The gRPC request a body stands for, and per output asked for whether it goes as binary."""
    json_end = len(body) if header_length is None else header_length
    if not 0 <= json_end <= len(body):
        raise InvalidArgument(HEADER_LENGTH, f"should be in range [0, {len(body)}], got {json_end}")
    if json_end == 0:
        raise InvalidArgument(HEADER_LENGTH, "0 (a raw binary body without JSON) is not served: send the JSON header")
    try:
        document = orjson.loads(body[:json_end])
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument("body", f"failed to parse the request JSON: {exc}") from None
    document = _object(document, "body")
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    if "id" in document:
        if not isinstance(document["id"], str):
            raise InvalidArgument("id", "must be a string")
        request.id = document["id"]
    parameters = _object(document.get("parameters", {}), "parameters")
    binary_default = _parameters(parameters, request)
    binary = memoryview(body)[json_end:]
    at = 0
    for i, item in enumerate(_list(document.get("inputs", []), "inputs")):
        at = _input(_object(item, f"inputs[{i}]"), i, request, binary, at)
    if at != len(binary):
        raise InvalidArgument("body", f"unexpected additional input data for model '{model}': {len(binary) - at} "
                                      f"bytes after the inputs' binary data")
    as_binary: dict[str, bool] = {}
    for i, item in enumerate(_list(document.get("outputs", []), "outputs")):
        output = _object(item, f"outputs[{i}]")
        name = output.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"outputs[{i}].name", "must be a non-empty string")
        options = _object(output.get("parameters", {}), f'output "{name}" parameters')
        if "classification" in options:
            raise InvalidArgument(f'output "{name}"', "the classification extension is not served")
        if name in as_binary:
            raise InvalidArgument(f'output "{name}"', "given twice")
        flag = options.get("binary_data", binary_default)
        if not isinstance(flag, bool):
            raise InvalidArgument(f'output "{name}" parameters[binary_data]', "must be true or false")
        wanted = request.outputs.add(name=name)
        if SHM_REGION in options:  # written into the region; the answer says where
            _region_parameters(options, wanted.parameters, f'output "{name}"')
            flag = IN_REGION
        as_binary[name] = flag
    if not as_binary:
        as_binary[""] = binary_default  # every output, as the request's default says
    return request, as_binary


def _parameters(parameters: dict, request: pb.ModelInferRequest) -> bool:
    """Copies what the server reads into the request; returns binary_data_output."""
    for key, value in parameters.items():
        if key.startswith("triton_"):
            raise InvalidArgument(f"parameters[{key}]", "keys starting with 'triton_' are reserved for Triton")
        if key in _RESERVED:
            raise InvalidArgument(f"parameters[{key}]", "is not served on HTTP")
        if key in ("sequence_id", "sequence_start", "sequence_end", "priority"):
            _scheduling(key, value, request.parameters[key])  # read as gRPC's are (api/request_parameters.py)
        if key == "timeout":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= INT64_MAX:
                raise InvalidArgument("parameters[timeout]", "must be a positive int64 of microseconds")
            request.parameters["timeout"].int64_param = value
    flag = parameters.get("binary_data_output", False)
    if not isinstance(flag, bool):
        raise InvalidArgument("parameters[binary_data_output]", "must be true or false")
    return flag


def _scheduling(key: str, value, target) -> None:
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int) and -INT64_MAX - 1 <= value <= INT64_MAX:
        target.int64_param = value
    elif isinstance(value, int) and 0 <= value <= UINT64_MAX:
        target.uint64_param = value
    elif isinstance(value, str):
        target.string_param = value
    else:
        raise InvalidArgument(f"parameters[{key}]", "must be a bool, an integer or a string")


def _input(item: dict, i: int, request: pb.ModelInferRequest, binary: memoryview, at: int) -> int:
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"inputs[{i}].name", "must be a non-empty string")
    field = f'input "{name}"'
    if not isinstance(datatype, str) or datatype not in BY_KSERVE:
        raise InvalidArgument(field, f"invalid datatype (one of {sorted(BY_KSERVE)})")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= INT64_MAX for d in shape):
        raise InvalidArgument(field, f"shape must be a list of at most {MAX_DIMS} non-negative int64 dimensions")
    options = _object(item.get("parameters", {}), f"{field} parameters")
    given = [key for key, present in (("data", "data" in item), ("binary_data_size", "binary_data_size" in options),
                                      (SHM_REGION, SHM_REGION in options)) if present]
    if len(given) != 1:
        raise InvalidArgument(field, f"must set exactly one of 'data', 'binary_data_size' and 'shared_memory_region' "
                                     f"(those two in 'parameters'), not {given or 'none'}")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    if given == [SHM_REGION]:  # its bytes are read from the region (api/shared_memory.py)
        _region_parameters(options, tensor.parameters, field)
        return at
    if given == ["binary_data_size"]:
        size = options["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(field, "binary_data_size must be a non-negative integer")
        if at + size > len(binary):
            raise InvalidArgument(field, f"expecting {size} bytes of binary data, but {len(binary) - at} are left")
        request.raw_input_contents.append(bytes(binary[at:at + size]))
        return at + size
    request.raw_input_contents.append(_json_data(item["data"], datatype, shape, field))
    return at


def _region_parameters(options: dict, target, field: str) -> None:
    """A tensor's shared memory region, offset and size, from JSON into the gRPC parameters."""
    region = options[SHM_REGION]
    if not isinstance(region, str) or not region:
        raise InvalidArgument(f"{field} parameters[{SHM_REGION}]", "must be a region's name")
    target[SHM_REGION].string_param = region
    for key in (SHM_SIZE, SHM_OFFSET):
        if key in options:
            value = options[key]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INT64_MAX:
                raise InvalidArgument(f"{field} parameters[{key}]", "must be a non-negative integer")
            target[key].int64_param = value


def _json_data(data: Any, datatype: str, shape: list[int], field: str) -> bytes:
    count = _count(shape)
    flat = _flatten(data, count, field)
    if len(flat) != count:
        raise InvalidArgument(field, f"data has {len(flat)} elements, but shape {shape} needs {count}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise InvalidArgument(field, "BYTES data must be strings")
        values = np.empty(count, dtype=object)
        values[:] = flat
        return serialize_bytes(values)
    if datatype in ("FP16", "BF16"):
        raise InvalidArgument(field, f"receiving {datatype} data via JSON is not supported: send it as binary data")
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in flat):
            raise InvalidArgument(field, "BOOL data must be true or false")
    elif datatype in _INTEGER_TYPES:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
            raise InvalidArgument(field, f"{datatype} data must be integers")
    elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
        raise InvalidArgument(field, f"{datatype} data must be numbers")
    try:
        with np.errstate(over="raise"):
            return np.asarray(flat, dtype=BY_KSERVE[datatype].numpy).tobytes()
    except (OverflowError, ValueError, FloatingPointError):
        raise InvalidArgument(field, f"data has a value that does not fit {datatype}") from None


def _count(shape: list[int]) -> int:
    """The elements `shape` holds; refused once past what any body could carry."""
    count = 1
    for d in shape:
        count *= d
        if count > 1 << 40:
            raise InvalidArgument("shape", f"{shape[:8]}... is larger than any tensor can be")
    return count if shape else 1


def _flatten(data: Any, limit: int, field: str) -> list:
    """Nested JSON arrays, row-major, as one list: one pass, at most MAX_NESTING deep, stopping
    once past `limit` elements (the count is then wrong, and says so)."""
    if not isinstance(data, list):
        raise InvalidArgument(field, "data must be a JSON array")
    out: list = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) >= MAX_NESTING:
                    raise InvalidArgument(field, f"data is nested more than {MAX_NESTING} arrays deep")
                stack.append(iter(item))
                break
            out.append(item)
            if len(out) > limit:
                return out
        else:
            stack.pop()
    return out


def render_response(response: pb.ModelInferResponse, as_binary: dict[str, bool | str],
                    request: pb.ModelInferRequest | None = None) -> tuple[bytes, int | None]:
    """(body, JSON length when binary data follows it, else None)."""
    default = as_binary.get("", False)
    regions = {o.name: o.parameters[SHM_REGION].string_param for o in (request.outputs if request else ())
               if SHM_REGION in o.parameters}
    outputs, chunks = [], []
    for tensor, raw in zip(response.outputs, response.raw_output_contents):
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        where = as_binary.get(tensor.name, default)
        if where == IN_REGION:
            entry["parameters"] = {SHM_REGION: regions[tensor.name]}
        elif where:
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _as_json(raw, tensor.datatype, tuple(tensor.shape), tensor.name)
        outputs.append(entry)
    head: dict[str, Any] = {"id": response.id} if response.id else {}
    head.update({"model_name": response.model_name, "model_version": response.model_version, "outputs": outputs})
    document = orjson.dumps(head)
    if not any(chunks):
        return document, None
    return document + b"".join(chunks), len(document)


def _as_json(raw: bytes, datatype: str, shape: tuple[int, ...], name: str) -> list:
    field = f'output "{name}"'
    if datatype in ("FP16", "BF16"):
        raise InvalidArgument(field, f"sending {datatype} data via JSON is not supported: ask for it as binary data")
    if datatype == "BYTES":
        try:
            return [as_bytes(v).decode("utf-8") for v in deserialize_bytes(raw, shape, field).reshape(-1)]
        except UnicodeDecodeError:
            raise InvalidArgument(field, "holds bytes that are not UTF-8 text: ask for it as binary data") from None
    return np.frombuffer(raw, dtype=BY_KSERVE[datatype].numpy).tolist()
