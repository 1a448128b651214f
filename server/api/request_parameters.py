"""A KServe inference request's scheduling parameters, as tritonclient sends them: the sequence
it belongs to (`sequence_id`, `sequence_start`, `sequence_end`), its `priority` and its queue
`timeout`; each checked, and refused naming the parameter when it is not what Triton takes."""
from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import service_pb2 as pb

from ..models.errors import InvalidArgument
from ..models.sequences import SequenceFlags

SEQUENCE_ID_CHARS = 256


@dataclass(frozen=True)
class Scheduling:
    sequence: SequenceFlags | None
    priority: int  # 0: the model's default level
    queue_timeout_s: float | None


def _choice(parameters, key: str):
    value = parameters[key]
    return value.WhichOneof("parameter_choice"), value


def _flag(parameters, key: str) -> bool:
    if key not in parameters:
        return False
    kind, value = _choice(parameters, key)
    if kind != "bool_param":
        raise InvalidArgument(f'parameters["{key}"]', f"must be a bool, not {kind or 'empty'}")
    return value.bool_param


def _sequence(parameters) -> SequenceFlags | None:
    if "sequence_id" not in parameters:
        for key in ("sequence_start", "sequence_end"):
            if _flag(parameters, key):
                raise InvalidArgument(f'parameters["{key}"]', "is set but parameters[\"sequence_id\"] is not")
        return None
    kind, value = _choice(parameters, "sequence_id")
    if kind == "string_param":
        corrid: int | str = value.string_param
        if len(corrid) > SEQUENCE_ID_CHARS:
            raise InvalidArgument('parameters["sequence_id"]', f"longer than {SEQUENCE_ID_CHARS} characters")
    elif kind in ("int64_param", "uint64_param"):
        corrid = getattr(value, kind)
        if corrid < 0:
            raise InvalidArgument('parameters["sequence_id"]', f"must not be negative, not {corrid}")
    else:
        raise InvalidArgument('parameters["sequence_id"]', f"must be an integer or a string, not {kind or 'empty'}")
    return SequenceFlags(corrid, _flag(parameters, "sequence_start"), _flag(parameters, "sequence_end"))


def _priority(parameters) -> int:
    if "priority" not in parameters:
        return 0
    kind, value = _choice(parameters, "priority")
    if kind not in ("uint64_param", "int64_param") or getattr(value, kind) < 0:
        raise InvalidArgument('parameters["priority"]', "must be a non-negative integer (1 the highest level, 0 the "
                                                        "model's default)")
    return getattr(value, kind)


def _timeout(parameters) -> float | None:
    if "timeout" not in parameters:
        return None
    kind, value = _choice(parameters, "timeout")
    micros = getattr(value, kind) if kind in ("int64_param", "uint64_param") else 0
    if micros <= 0:
        raise InvalidArgument('parameters["timeout"]', f"must be a positive int64 of microseconds, not {micros}")
    return micros / 1e6


def scheduling(request: pb.ModelInferRequest) -> Scheduling:
    parameters = request.parameters
    return Scheduling(_sequence(parameters), _priority(parameters), _timeout(parameters))
