"""config.pbtxt `sequence_batching`, read into what the sequence scheduler needs (models/sequences.py).

A sequence model is fed, beside the inputs its clients send, tensors the server makes: control
inputs (START, END, READY, CORRID, in the data type and false/true values the config names) and
implicit state (each `state` entry's input is what the model gave as its output on the
sequence's previous request, or the initial state on the first). Clients never send those and
never see the state outputs. Both strategies, direct and oldest, are served as one: a request
from each ready sequence is batched with those of other sequences, in order within each
sequence; their queue delay and (oldest) preferred sizes go to the dynamic batcher. Every live
sequence is a candidate for every batch: oldest's max_candidate_sequences, which in Triton makes
sequences past it wait in a backlog, never holds a sequence back here (parameters
["max_sequences"] bounds the live ones).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from .config import ConfigError, TensorSpec
from .datatypes import BY_CONFIG, DataType

DEFAULT_IDLE_S = 1.0  # Triton's default max_sequence_idle_microseconds
DEFAULT_MAX_SEQUENCES = 1024  # live sequences a model holds unless parameters["max_sequences"] says
MAX_SEQUENCES_PARAMETER = "max_sequences"
_Kind = mc.ModelSequenceBatching.Control.Kind
KINDS = {_Kind.Value("CONTROL_SEQUENCE_START"): "start", _Kind.Value("CONTROL_SEQUENCE_END"): "end",
         _Kind.Value("CONTROL_SEQUENCE_READY"): "ready", _Kind.Value("CONTROL_SEQUENCE_CORRID"): "corrid"}
CORRID_TYPES = ("TYPE_UINT64", "TYPE_INT64", "TYPE_UINT32", "TYPE_INT32", "TYPE_STRING")


@dataclass(frozen=True)
class Control:
    name: str  # the model input it feeds
    kind: str  # start | end | ready | corrid
    datatype: DataType
    false_true: tuple  # (value when false, value when true); empty for corrid


@dataclass(frozen=True)
class State:
    input_name: str
    output_name: str
    datatype: DataType
    initial: np.ndarray  # one sequence's initial state (batch dim included when the model batches)


@dataclass(frozen=True)
class SequenceSpec:
    model: str
    batched: bool
    controls: tuple[Control, ...]
    states: tuple[State, ...]
    idle_s: float
    max_sequences: int
    queue_delay_s: float
    preferred_batch_sizes: tuple[int, ...]

    @property
    def hidden_inputs(self) -> dict[str, DataType]:
        """Model inputs the server feeds, with their data types."""
        found = {c.name: c.datatype for c in self.controls}
        found.update({s.input_name: s.datatype for s in self.states})
        return found

    @property
    def state_outputs(self) -> dict[str, DataType]:
        return {s.output_name: s.datatype for s in self.states}

    def controls_for(self, start: bool, end: bool, corrid: int | str, rows: int = 1) -> dict[str, np.ndarray]:
        """One request's control tensors (shape [rows, 1] when the model batches, [1] if not)."""
        shape = (rows, 1) if self.batched else (1,)
        out: dict[str, np.ndarray] = {}
        for control in self.controls:
            if control.kind == "corrid":
                value = corrid if control.datatype.kserve == "BYTES" else int(corrid)
            else:
                flag = {"start": start, "end": end, "ready": True}[control.kind]
                value = control.false_true[int(flag)]
            out[control.name] = np.full(shape, value, dtype=control.datatype.numpy)
        return out


    def warmup_feeds(self, rows: int) -> dict[str, np.ndarray]:
        """What the server feeds for `rows` sequences that each start and end at once (warm-up)."""
        feeds = self.controls_for(True, True, "1" if any(c.datatype.kserve == "BYTES" for c in self.controls) else 1,
                                  rows)
        for state in self.states:
            feeds[state.input_name] = np.repeat(state.initial, rows, axis=0) if self.batched else state.initial
        return feeds


def sequence_spec(config: mc.ModelConfig) -> SequenceSpec | None:
    """The config's sequence_batching, checked; None when it has none. Raises ConfigError naming
    the field."""
    if not config.HasField("sequence_batching"):
        return None
    sb = config.sequence_batching
    batched = config.max_batch_size > 0
    names: set[str] = set()
    controls = tuple(_control(config.name, i, entry, names) for i, entry in enumerate(sb.control_input))
    states = tuple(_state(config.name, i, entry, batched, names) for i, entry in enumerate(sb.state))
    idle_us = sb.max_sequence_idle_microseconds
    strategy = sb.oldest if sb.HasField("oldest") else sb.direct
    preferred = tuple(sorted(int(s) for s in sb.oldest.preferred_batch_size)) if sb.HasField("oldest") else ()
    for size in preferred:
        if not 0 < size <= max(config.max_batch_size, 1):
            raise ConfigError(f"{config.name}: sequence_batching.oldest.preferred_batch_size {size} must be in "
                              f"1..max_batch_size ({config.max_batch_size})")
    return SequenceSpec(config.name, batched, controls, states, idle_us / 1e6 if idle_us else DEFAULT_IDLE_S,
                        _max_sequences(config), strategy.max_queue_delay_microseconds / 1e6, preferred)


def _max_sequences(config: mc.ModelConfig) -> int:
    """Live sequences a model holds: Triton's backlog is unbounded; here a bound, so sequences
    that are never ended cannot grow memory without end."""
    if MAX_SEQUENCES_PARAMETER not in config.parameters:
        return DEFAULT_MAX_SEQUENCES
    text = config.parameters[MAX_SEQUENCES_PARAMETER].string_value
    if not text.isdigit() or not 0 < int(text) <= 1_000_000:
        raise ConfigError(f'{config.name}: parameters["{MAX_SEQUENCES_PARAMETER}"] must be a whole number in '
                          f'1..1000000, not {text[:40]!r}')
    return int(text)


def _control(model: str, i: int, entry, names: set[str]) -> Control:
    where = f"{model}: sequence_batching.control_input[{i}]"
    if not entry.name or entry.name in names:
        raise ConfigError(f"{where}: needs a name of its own (got {entry.name!r})")
    names.add(entry.name)
    if len(entry.control) != 1:
        raise ConfigError(f"{where} ({entry.name!r}): exactly one control per input is served, not "
                          f"{len(entry.control)}")
    control = entry.control[0]
    kind = KINDS[control.kind]
    if kind == "corrid":
        type_name = mc.DataType.Name(control.data_type)
        if type_name not in CORRID_TYPES:
            raise ConfigError(f"{where} ({entry.name!r}): a CORRID control's data_type must be one of "
                              f"{list(CORRID_TYPES)}, not {type_name}")
        return Control(entry.name, kind, BY_CONFIG[type_name], ())
    given = [(field, list(getattr(control, field))) for field in ("int32_false_true", "fp32_false_true",
                                                                    "bool_false_true") if len(getattr(control, field))]
    if len(given) != 1 or len(given[0][1]) != 2:
        raise ConfigError(f"{where} ({entry.name!r}): a {kind.upper()} control needs exactly one of "
                          f"int32_false_true, fp32_false_true or bool_false_true, with two values")
    field, values = given[0]
    datatype = BY_CONFIG[{"int32_false_true": "TYPE_INT32", "fp32_false_true": "TYPE_FP32",
                          "bool_false_true": "TYPE_BOOL"}[field]]
    return Control(entry.name, kind, datatype, tuple(values))


def _state(model: str, i: int, entry, batched: bool, names: set[str]) -> State:
    where = f"{model}: sequence_batching.state[{i}]"
    if not entry.input_name or not entry.output_name or entry.input_name in names:
        raise ConfigError(f"{where}: needs an input_name of its own and an output_name")
    names.add(entry.input_name)
    type_name = mc.DataType.Name(entry.data_type)
    if type_name not in BY_CONFIG or type_name == "TYPE_STRING":
        raise ConfigError(f"{where} ({entry.input_name!r}): data_type {type_name} is not served for a state")
    datatype = BY_CONFIG[type_name]
    dims = [int(d) for d in entry.dims]
    if len(entry.initial_state) > 1:
        raise ConfigError(f"{where}: at most one initial_state is served")
    if len(entry.initial_state):
        initial = entry.initial_state[0]
        if initial.HasField("data_file"):
            raise ConfigError(f"{where}.initial_state: data_file is not served; use zero_data")
        if initial.data_type != entry.data_type:
            raise ConfigError(f"{where}.initial_state: data_type differs from the state's {type_name}")
        dims = [int(d) for d in initial.dims]
    if not dims or any(d < 0 for d in dims):
        raise ConfigError(f"{where} ({entry.input_name!r}): dims {dims} must be fixed (an initial_state with "
                          f"fixed dims sets a variable state's first value)")
    shape = ((1,) if batched else ()) + tuple(dims)
    return State(entry.input_name, entry.output_name, datatype, np.zeros(shape, dtype=datatype.numpy))


def check_sequence_io(spec: SequenceSpec, model_inputs: list[TensorSpec], model_outputs: list[TensorSpec]) -> None:
    """Each control and state names a model input (and output) of its data type, and each control
    takes one value per request."""
    inputs = {t.name: t for t in model_inputs}
    outputs = {t.name: t for t in model_outputs}
    for name, datatype in spec.hidden_inputs.items():
        model = inputs.get(name)
        if model is None:
            raise ConfigError(f"{spec.model}: sequence_batching names input {name!r}, which is not in the model "
                              f"(it has {sorted(inputs)})")
        if model.datatype != datatype:
            raise ConfigError(f"{spec.model}: sequence_batching feeds {name!r} as {datatype.config}, but the model "
                              f"takes {model.datatype.config}")
    for control in spec.controls:
        dims = list(inputs[control.name].dims[1:] if spec.batched else inputs[control.name].dims)
        if dims not in ([1], [-1]):
            raise ConfigError(f"{spec.model}: control input {control.name!r} has dims {dims} in the model; a "
                              f"control is one value per request ([1])")
    for state in spec.states:
        model = outputs.get(state.output_name)
        if model is None or model.datatype != state.datatype:
            raise ConfigError(f"{spec.model}: state output {state.output_name!r} must be a model output of "
                              f"{state.datatype.config} (the model has {sorted(outputs)})")
