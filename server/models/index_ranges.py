"""The index ranges a model accepts, read from its ONNX graph at load.

An integer input that ends up as the `indices` of a Gather on a fixed table (an embedding)
must stay inside the table: ONNX Runtime fails the whole batch otherwise, with an error that
names neither the input nor the request. Found here once per load, checked per request by
ModelVersion.check_inputs with one min() and one max().

Only ops that pass every input element through unchanged in value are followed from the
input to the Gather (Identity, integer Cast, Reshape, ...): behind a Clip, a Slice or any
arithmetic the input's own range is not the table's, and nothing is recorded. Only the
top-level graph is read: a Gather inside an If or Loop body is left to the backend.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from .sliced_dims import graph_dim_limits, shared_dims

_INTEGER = {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8,
            TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64}
# Ops whose output holds every element of input 0 and nothing else (Expand only repeats).
_PASS_THROUGH = {"Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Expand"}
_GATHERS = {"Gather", "GatherElements"}  # data input 0, indices input 1, attribute axis


@dataclass(frozen=True)
class IndexRange:
    """Values in [low, high) are valid: ONNX Gather takes -n..n-1 on an axis of n rows."""

    low: int
    high: int
    table: str  # the initializer indexed (the tightest one when several are)


def index_ranges(model_path: Path) -> dict[str, IndexRange]:
    """Input name -> the range its values must lie in, for the graph at `model_path`."""
    return graph_limits(model_path)[0]


def graph_limits(model_path: Path) -> tuple[dict[str, IndexRange], dict[str, dict[int, tuple[int, str]]],
                                           list[tuple[str, list[tuple[str, int]]]]]:
    """The index ranges, the longest dimensions and the shared named dimensions (sliced_dims)
    of the graph at `model_path`.

    Reads the graph without external data, and the parsed model is dropped on return: call
    it before the sessions are built, so the peak is one copy of the model, not two.
    """
    model = onnx.load(str(model_path), load_external_data=False)
    graph = model.graph
    tables = _tables(graph)
    return graph_index_ranges(graph, tables), graph_dim_limits(graph, tables), shared_dims(graph)


def _attribute(node: onnx.NodeProto, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _tables(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """Fixed tensors by name -> dims: initializers (not those a caller may override as a
    graph input) and Constant nodes."""
    overridable = {i.name for i in graph.input}
    tables = {t.name: tuple(t.dims) for t in graph.initializer if t.name not in overridable}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            value = _attribute(node, "value", None)
            if isinstance(value, onnx.TensorProto):
                tables[node.output[0]] = tuple(value.dims)
    return tables


def _rows(node: onnx.NodeProto, dims: tuple[int, ...]) -> int | None:
    if not dims:
        return None
    axis = int(_attribute(node, "axis", 0))
    axis = axis + len(dims) if axis < 0 else axis
    return int(dims[axis]) if 0 <= axis < len(dims) else None


def _passes_values(node: onnx.NodeProto) -> bool:
    if node.op_type not in _PASS_THROUGH or node.domain not in ("", "ai.onnx"):
        return False
    return node.op_type != "Cast" or _attribute(node, "to", None) in _INTEGER


def _reached_tables(name: str, consumers: dict[str, list[onnx.NodeProto]],
                    tables: dict[str, tuple[int, ...]]) -> list[tuple[str, int]]:
    """(table, rows) of every Gather whose indices are `name`'s values, moved only by
    value-preserving ops."""
    found, seen, todo = [], {name}, [name]
    while todo:
        value = todo.pop()
        for node in consumers.get(value, []):
            for position, used in enumerate(node.input):
                if used != value:
                    continue
                if (node.op_type in _GATHERS and node.domain in ("", "ai.onnx") and position == 1
                        and node.input[0] in tables):
                    rows = _rows(node, tables[node.input[0]])
                    if rows is not None:
                        found.append((node.input[0], rows))
                elif position == 0 and _passes_values(node) and node.output[0] not in seen:
                    seen.add(node.output[0])
                    todo.append(node.output[0])
    return found


def graph_index_ranges(graph: onnx.GraphProto,
                       tables: dict[str, tuple[int, ...]] | None = None) -> dict[str, IndexRange]:
    """The ranges for a graph's integer inputs that reach a Gather on a fixed table."""
    tables = _tables(graph) if tables is None else tables
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for used in set(node.input):
            consumers.setdefault(used, []).append(node)
    ranges: dict[str, IndexRange] = {}
    initializers = {t.name for t in graph.initializer}
    for graph_input in graph.input:
        if graph_input.name in initializers or graph_input.type.tensor_type.elem_type not in _INTEGER:
            continue
        reached = _reached_tables(graph_input.name, consumers, tables)
        if reached:
            table, rows = min(reached, key=lambda item: item[1])
            ranges[graph_input.name] = IndexRange(-rows, rows, table)
    return ranges
