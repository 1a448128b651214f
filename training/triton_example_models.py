"""The models NVIDIA's Triton client examples ask for (triton-inference-server/server,
docs/examples/model_repository), rebuilt as small ONNX graphs with the same names, tensors and
config.pbtxt, so a Triton user can point those examples at Hanzo unchanged:

- `simple`: INT32 INPUT0, INPUT1 [16] -> OUTPUT0 = sum, OUTPUT1 = difference;
- `simple_int8`: the same in INT8;
- `simple_string`: the same on decimal strings (BYTES): parsed, added and subtracted, written back;
- `simple_identity`: a BYTES tensor of any length, returned as it came (Triton serves it from a
  Python model; here ONNX's Identity);
- `simple_sequence`: a sequence model (the sequence examples): OUTPUT = READY * (INPUT + START),
  with START and READY fed by the server's sequence batcher, as Triton's own ONNX graph does.

Each batches up to 8 rows, as Triton's do."""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as mc

from hanzo.training.repository_writer import write_version

OPSET = 17
MAX_BATCH = 8


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hanzo-examples")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def sum_and_difference(name: str, element: int) -> onnx.ModelProto:
    """INPUT0 + INPUT1 and INPUT0 - INPUT1, computed in INT32 (strings parsed as decimals)."""
    nodes, a, b = [], "INPUT0", "INPUT1"
    if element != TensorProto.INT32:
        nodes += [helper.make_node("Cast", ["INPUT0"], ["a"], to=TensorProto.INT32),
                  helper.make_node("Cast", ["INPUT1"], ["b"], to=TensorProto.INT32)]
        a, b = "a", "b"
    nodes += [helper.make_node("Add", [a, b], ["sum"]), helper.make_node("Sub", [a, b], ["difference"]),
              helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=element),
              helper.make_node("Cast", ["difference"], ["OUTPUT1"], to=element)]

    def tensor(tensor_name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(tensor_name, element, ["batch", 16])

    graph = helper.make_graph(nodes, name, [tensor("INPUT0"), tensor("INPUT1")], [tensor("OUTPUT0"), tensor("OUTPUT1")])
    return _model(graph)


def identity() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], "simple_identity",
                              [helper.make_tensor_value_info("INPUT0", TensorProto.STRING, ["batch", "n"])],
                              [helper.make_tensor_value_info("OUTPUT0", TensorProto.STRING, ["batch", "n"])])
    return _model(graph)


def simple_sequence() -> onnx.ModelProto:
    nodes = [helper.make_node("Add", ["INPUT", "START"], ["sum"]), helper.make_node("Mul", ["READY", "sum"], ["OUTPUT"])]

    def tensor(tensor_name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(tensor_name, TensorProto.INT32, ["batch", 1])

    graph = helper.make_graph(nodes, "simple_sequence", [tensor("INPUT"), tensor("START"), tensor("READY")],
                              [tensor("OUTPUT")])
    return _model(graph)


def simple_sequence_config() -> mc.ModelConfig:
    config = _config("simple_sequence", mc.TYPE_INT32, ["INPUT"], ["OUTPUT"], [1])
    for control_name, kind in (("START", "CONTROL_SEQUENCE_START"), ("READY", "CONTROL_SEQUENCE_READY")):
        entry = config.sequence_batching.control_input.add(name=control_name)
        entry.control.add(kind=mc.ModelSequenceBatching.Control.Kind.Value(kind), int32_false_true=[0, 1])
    return config


def _config(name: str, data_type: int, inputs: list[str], outputs: list[str], dims: list[int]) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=MAX_BATCH)
    for entry, names in ((config.input, inputs), (config.output, outputs)):
        for tensor_name in names:
            entry.add(name=tensor_name, data_type=data_type, dims=dims)
    return config


EXAMPLES = {
    "simple": (lambda: sum_and_difference("simple", TensorProto.INT32), mc.TYPE_INT32),
    "simple_int8": (lambda: sum_and_difference("simple_int8", TensorProto.INT8), mc.TYPE_INT8),
    "simple_string": (lambda: sum_and_difference("simple_string", TensorProto.STRING), mc.TYPE_STRING),
}


def build_triton_examples(root: Path) -> list[str]:
    """Write each example model as version 1 under `root`; returns their names."""
    for name, (build, data_type) in EXAMPLES.items():
        write_version(Path(root), _config(name, data_type, ["INPUT0", "INPUT1"], ["OUTPUT0", "OUTPUT1"], [16]), 1,
                      build())
    write_version(Path(root), _config("simple_identity", mc.TYPE_STRING, ["INPUT0"], ["OUTPUT0"], [-1]), 1,
                  identity())
    write_version(Path(root), simple_sequence_config(), 1, simple_sequence())
    return sorted([*EXAMPLES, "simple_identity", "simple_sequence"])
