"""The fraud ensemble as one ONNX graph: the trees (onnxmltools' TreeEnsembleClassifier) and the
MLP side by side on the same input, blended `alpha * trees + (1 - alpha) * mlp`, so a served
order costs one batcher call. Outputs: score, xgb, mlp, each float32 [batch, 1]."""
from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import torch
import xgboost
from onnx import TensorProto, helper

from .mlp import FraudMLP
from hanzo.training.xgb_export import export_onnx as export_trees

INPUT = "features"


class _Column(torch.nn.Module):
    def __init__(self, mlp: FraudMLP) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features).unsqueeze(1)


def mlp_onnx(mlp: FraudMLP, n_features: int) -> onnx.ModelProto:
    mlp.eval()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mlp.onnx"
        torch.onnx.export(_Column(mlp), (torch.zeros(2, n_features),), str(path), dynamo=False, opset_version=17,
                          input_names=[INPUT], output_names=["probability"],
                          dynamic_axes={INPUT: {0: "batch"}, "probability": {0: "batch"}})
        return onnx.load(str(path))


def trees_onnx(booster: xgboost.Booster, n_features: int) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as folder:
        return export_trees(booster, n_features, Path(folder) / "trees.onnx")


def _prefixed(graph: onnx.GraphProto, prefix: str) -> tuple[list, list, str]:
    """The graph's nodes and initializers with every name but the shared input prefixed; and
    its (prefixed) single output."""
    keep = {INPUT, ""}

    def rename(name: str) -> str:
        return name if name in keep else prefix + name

    nodes = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + (node.name or node.op_type)
        copy.input[:] = [rename(n) for n in node.input]
        copy.output[:] = [rename(n) for n in node.output]
        nodes.append(copy)
    initializers = []
    for tensor in graph.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.name = rename(tensor.name)
        initializers.append(copy)
    outputs = [o.name for o in graph.output]
    if len(outputs) != 1:
        raise ValueError(f"expected one output, found {outputs}")
    return nodes, initializers, rename(outputs[0])


def ensemble_onnx(booster: xgboost.Booster, mlp: FraudMLP, alpha: float, n_features: int) -> onnx.ModelProto:
    trees, net = trees_onnx(booster, n_features), mlp_onnx(mlp, n_features)
    tree_nodes, tree_init, tree_out = _prefixed(trees.graph, "xgb/")
    mlp_nodes, mlp_init, mlp_out = _prefixed(net.graph, "mlp/")
    blend = [
        helper.make_node("Identity", [tree_out], ["xgb"], name="xgb_out"),
        helper.make_node("Identity", [mlp_out], ["mlp"], name="mlp_out"),
        helper.make_node("Mul", ["xgb", "alpha"], ["xgb_part"], name="xgb_part"),
        helper.make_node("Mul", ["mlp", "one_minus_alpha"], ["mlp_part"], name="mlp_part"),
        helper.make_node("Add", ["xgb_part", "mlp_part"], ["score"], name="score"),
    ]
    constants = [helper.make_tensor("alpha", TensorProto.FLOAT, [], [alpha]),
                 helper.make_tensor("one_minus_alpha", TensorProto.FLOAT, [], [1.0 - alpha])]
    column = ["batch", 1]
    graph = helper.make_graph(
        tree_nodes + mlp_nodes + blend, "fraud_ensemble",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, column) for name in ("score", "xgb", "mlp")],
        tree_init + mlp_init + constants)
    opsets: dict[str, int] = {}
    for model in (trees, net):
        for opset in model.opset_import:
            domain = "" if opset.domain == "ai.onnx" else opset.domain
            opsets[domain] = max(opsets.get(domain, 0), opset.version)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
                              producer_name="hanzo.training.fraud")
    model.ir_version = max(trees.ir_version, net.ir_version)
    onnx.checker.check_model(model)
    return model
