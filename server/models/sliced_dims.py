"""The longest a dimension of an input may be, and the dimensions inputs must share, read
from the ONNX graph at load.

A positional table is the classic case: `position[:len(query)]` is a Slice of a fixed table
whose end is the input's own length (Shape -> Gather -> Unsqueeze). A longer input slices
past the table's end, the slice comes out short, and the Add that follows fails the whole
batch inside ONNX Runtime. Found once per load, checked per request on the tensor's shape.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

# Ops between Shape's Gather and Slice's `ends` that keep the value (a one-element list).
_KEEPS = {"Unsqueeze", "Cast", "Identity", "Reshape", "Squeeze", "Concat"}


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer if np.prod(t.dims) <= 16}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


def _length_of(name: str, producers: dict[str, onnx.NodeProto], constants: dict[str, np.ndarray],
               inputs: set[str]) -> tuple[str, int] | None:
    """(graph input, dimension) when `name` holds that input's length on that dimension."""
    node = producers.get(name)
    while node is not None and node.op_type in _KEEPS:
        if node.op_type == "Concat" and len(node.input) != 1:
            return None
        node = producers.get(node.input[0])
    if node is None or node.op_type != "Gather" or any(a.name == "axis" and a.i != 0 for a in node.attribute):
        return None
    shape, index = producers.get(node.input[0]), constants.get(node.input[1])
    if shape is None or shape.op_type != "Shape" or shape.attribute or index is None or index.size != 1:
        return None
    source = shape.input[0]
    while source not in inputs and producers.get(source) is not None and producers[source].op_type == "Identity":
        source = producers[source].input[0]
    return (source, int(index.reshape(-1)[0])) if source in inputs else None


def graph_dim_limits(graph: onnx.GraphProto, tables: dict[str, tuple[int, ...]]) -> dict[str, dict[int, tuple[int, str]]]:
    """Input -> {dimension: (longest, table)} for inputs whose length slices a fixed table
    (`tables`: fixed tensors by name -> dims)."""
    producers = {out: node for node in graph.node for out in node.output}
    constants = _constants(graph)
    inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    limits: dict[str, dict[int, tuple[int, str]]] = {}
    for node in graph.node:
        if node.op_type != "Slice" or len(node.input) < 3 or node.input[0] not in tables:
            continue
        axes = constants.get(node.input[3]) if len(node.input) > 3 and node.input[3] else np.array([0])
        steps = constants.get(node.input[4]) if len(node.input) > 4 and node.input[4] else np.array([1])
        if axes is None or axes.size != 1 or steps is None or int(steps.reshape(-1)[0]) != 1:
            continue
        found = _length_of(node.input[2], producers, constants, inputs)
        dims = tables[node.input[0]]
        axis = int(axes.reshape(-1)[0])
        axis = axis + len(dims) if axis < 0 else axis
        if found is None or not 0 <= axis < len(dims):
            continue
        source, dim = found
        longest = int(dims[axis])
        known = limits.setdefault(source, {}).get(dim)
        if known is None or longest < known[0]:
            limits[source][dim] = (longest, node.input[0])
    return limits


def shared_dims(graph: onnx.GraphProto) -> list[tuple[str, list[tuple[str, int]]]]:
    """Named dimensions that several inputs share (`candidates` in [1, candidates, 20] and
    [1, candidates, 3]): each name with its (input, dimension) places. Inputs that disagree
    on one fail inside ONNX Runtime, which names neither."""
    places: dict[str, list[tuple[str, int]]] = {}
    initializers = {t.name for t in graph.initializer}
    for graph_input in graph.input:
        if graph_input.name in initializers:
            continue
        for dim, size in enumerate(graph_input.type.tensor_type.shape.dim):
            if size.dim_param:
                places.setdefault(size.dim_param, []).append((graph_input.name, dim))
    return [(name, where) for name, where in places.items() if len(where) > 1]
