"""Two small seeded ONNX models so a fresh clone serves something real: an order-risk MLP
(FP32 features -> probability) and a user tower (INT64 product-id history + FP32 context ->
unit-norm embedding). They exercise batching, several inputs and dtypes; the surfaces'
trained models replace them as their issues land."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2 as mc

from .repository_writer import write_version

OPSET = 17
IR_VERSION = 8  # readable by older onnxruntime builds too (e.g. a Triton Python-backend venv)
SEED = 20261123

RISK_FEATURES = 32
TOWER_HISTORY, TOWER_CONTEXT, TOWER_VOCAB, TOWER_DIM = 16, 8, 1000, 32


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hanzo-demo")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def risk_mlp(seed: int = SEED) -> onnx.ModelProto:
    """features [N, 32] -> score [N, 1] = sigmoid(W3 relu(W2 relu(W1 x + b1) + b2) + b3)."""
    rng = np.random.default_rng(seed)
    sizes = [RISK_FEATURES, 64, 64, 1]
    inits, nodes, x = [], [], "features"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        bias = (0.1 * rng.standard_normal(b)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"h{i}"]))
        x = f"h{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    nodes.append(helper.make_node("Sigmoid", [x], ["score"]))
    graph = helper.make_graph(
        nodes, "demo_risk_mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", RISK_FEATURES])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])], inits)
    return _model(graph)


def user_tower(seed: int = SEED) -> onnx.ModelProto:
    """history [N, 16] INT64, context [N, 8] FP32 -> embedding [N, 32], unit L2 norm:
    normalize(W relu(mean(E[clip(history)]) + C context))."""
    rng = np.random.default_rng(seed + 1)
    table = (rng.standard_normal((TOWER_VOCAB, TOWER_DIM)) / np.sqrt(TOWER_DIM)).astype(np.float32)
    ctx_w = (rng.standard_normal((TOWER_CONTEXT, TOWER_DIM)) / np.sqrt(TOWER_CONTEXT)).astype(np.float32)
    out_w = (rng.standard_normal((TOWER_DIM, TOWER_DIM)) / np.sqrt(TOWER_DIM)).astype(np.float32)
    inits = [
        numpy_helper.from_array(table, "item_table"),
        numpy_helper.from_array(ctx_w, "context_w"),
        numpy_helper.from_array(out_w, "out_w"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "id_min"),
        numpy_helper.from_array(np.array(TOWER_VOCAB - 1, dtype=np.int64), "id_max"),
    ]
    nodes = [
        # Unknown ids are clipped into the table rather than failing the whole batch.
        helper.make_node("Clip", ["history", "id_min", "id_max"], ["ids"]),
        helper.make_node("Gather", ["item_table", "ids"], ["item_vecs"]),
        helper.make_node("ReduceMean", ["item_vecs"], ["history_vec"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["context", "context_w"], ["context_vec"]),
        helper.make_node("Add", ["history_vec", "context_vec"], ["mixed"]),
        helper.make_node("Relu", ["mixed"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "out_w"], ["raw"]),
        helper.make_node("LpNormalization", ["raw"], ["embedding"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "demo_user_tower",
        [helper.make_tensor_value_info("history", TensorProto.INT64, ["batch", TOWER_HISTORY]),
         helper.make_tensor_value_info("context", TensorProto.FLOAT, ["batch", TOWER_CONTEXT])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", TOWER_DIM])], inits)
    return _model(graph)


def _config(name: str, max_batch_size: int) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend="onnxruntime", max_batch_size=max_batch_size,
                            default_model_filename="model.onnx")
    # No queue delay: on a CPU, requests that arrive while the instance is busy already form
    # the next batch; `hanzo tune` finds out whether a delay pays.
    config.dynamic_batching.max_queue_delay_microseconds = 0
    config.dynamic_batching.default_queue_policy.max_queue_size = 1024
    group = config.instance_group.add()
    group.count = 1
    group.kind = mc.ModelInstanceGroup.KIND_AUTO
    config.version_policy.latest.num_versions = 1
    return config


DEMO_MODELS = {
    "demo_risk_mlp": (risk_mlp, 64),
    "demo_user_tower": (user_tower, 64),
}


def build_demo_repository(root: Path) -> list[str]:
    """Write every demo model as version 1 under `root`; returns their names."""
    for name, (build, max_batch) in DEMO_MODELS.items():
        write_version(Path(root), _config(name, max_batch), 1, build())
    return sorted(DEMO_MODELS)
