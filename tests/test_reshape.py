"""config.pbtxt reshape, served: clients send and get the shape config.pbtxt states, the model
sees the shape it was built for (Triton's reshape), and a reshape that cannot hold is refused
at load naming the tensor."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from helpers import ServerProcess

from hanzo.server.models import ModelRepository
from hanzo.server.models.errors import FailedPrecondition
from hanzo.training.repository_writer import write_version


def _doubler():
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])], "doubler",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _config(input_dims=(4, 4), output_dims=(2, 8)) -> mc.ModelConfig:
    config = mc.ModelConfig(name="doubler", backend="onnxruntime", max_batch_size=8)
    entry = config.input.add(name="x", data_type=mc.TYPE_FP32, dims=list(input_dims))
    entry.reshape.shape.extend([16])
    out = config.output.add(name="y", data_type=mc.TYPE_FP32, dims=list(output_dims))
    out.reshape.shape.extend([16])
    return config


def test_clients_see_the_configs_shape_and_the_model_its_own(tmp_path):
    write_version(tmp_path / "repo", _config(), 1, _doubler())
    server = ServerProcess(tmp_path / "repo", "--no-demo-models").wait_ready()
    try:
        client = grpcclient.InferenceServerClient(server.url)
        meta = client.get_model_metadata("doubler")
        assert list(meta.inputs[0].shape) == [-1, 4, 4] and list(meta.outputs[0].shape) == [-1, 2, 8]
        x = np.arange(48, dtype=np.float32).reshape(3, 4, 4)
        tensor = grpcclient.InferInput("x", [3, 4, 4], "FP32")
        tensor.set_data_from_numpy(x)
        y = client.infer("doubler", [tensor]).as_numpy("y")
        assert y.shape == (3, 2, 8) and np.array_equal(y, (2 * x).reshape(3, 2, 8))
        flat = grpcclient.InferInput("x", [3, 16], "FP32")
        flat.set_data_from_numpy(x.reshape(3, 16))
        with pytest.raises(InferenceServerException, match=r'input "x": shape \[3, 16\]'):
            client.infer("doubler", [flat])  # the model's own shape is not the clients'
    finally:
        server.terminate()


async def test_a_reshape_that_cannot_hold_is_refused_naming_the_tensor(tmp_path):
    write_version(tmp_path / "repo", _config(input_dims=(4, 5)), 1, _doubler())
    repo = ModelRepository(tmp_path / "repo")
    with pytest.raises(FailedPrecondition, match=r"input 'x' reshape \[16\] holds 16 elements, but dims \[4, 5\]"):
        await repo.load("doubler")
    await repo.close()
