"""A model served through a real remote Triton Inference Server (the nvidia-pytriton wheel's
tritonserver, serving the model's Python-backend twin): the same answers as in-process ONNX
Runtime, batches formed by Hanzo's batcher, every call seen by Triton's own statistics.
Skipped with the reason where that server cannot be installed (../shared/notes/triton-on-cpu.md)."""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tc
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from hanzo.loadtest.tritonserver import TritonServer, TritonUnavailable, completed_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    from hanzo.training.demo_models import build_demo_repository

    root = tmp_path_factory.mktemp("triton")
    repo = root / "model_repo"
    build_demo_repository(repo)
    config = completed_config(repo, "demo_risk_mlp")
    server = TritonServer(repo, [config], root, log=lambda m: None)
    try:
        server.__enter__()
    except TritonUnavailable as exc:  # what the machine lacks; any other error is a failure
        pytest.skip(f"a Triton server cannot be started here: {exc}")
    yield server, repo
    server.__exit__(None, None, None)


def test_remote_triton_answers_like_onnxruntime(triton, server_process, tmp_path):
    remote, source = triton
    repo = tmp_path / "model_repo"
    shutil.copytree(source / "demo_risk_mlp", repo / "demo_risk_mlp")
    config = mc.ModelConfig()
    text_format.Parse((repo / "demo_risk_mlp" / "config.pbtxt").read_text(), config)
    config.parameters["remote_triton_url"].string_value = remote.url
    config.dynamic_batching.max_queue_delay_microseconds = 2000  # so concurrent calls batch here first
    (repo / "demo_risk_mlp" / "config.pbtxt").write_text(text_format.MessageToString(config))
    server = server_process(repo)
    client = tc.InferenceServerClient(server.url)
    session = ort.InferenceSession(str(repo / "demo_risk_mlp" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)

    def ask(x: np.ndarray) -> np.ndarray:
        tensor = tc.InferInput(name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return client.infer("demo_risk_mlp", [tensor]).as_numpy(session.get_outputs()[0].name)

    before = tc.InferenceServerClient(remote.url).get_inference_statistics("demo_risk_mlp")
    served_before = before.model_stats[0].inference_count
    batches = [rng.standard_normal((n, session.get_inputs()[0].shape[1])).astype(np.float32) for n in (1, 5, 17)]
    for x in batches:
        np.testing.assert_allclose(ask(x), session.run(None, {name: x})[0], rtol=1e-5, atol=1e-6)
    many = [rng.standard_normal((1, session.get_inputs()[0].shape[1])).astype(np.float32) for _ in range(24)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, many))
    for x, y in zip(many, answers):
        np.testing.assert_allclose(y, session.run(None, {name: x})[0], rtol=1e-5, atol=1e-6)
    after = tc.InferenceServerClient(remote.url).get_inference_statistics("demo_risk_mlp").model_stats[0]
    assert after.inference_count - served_before == 1 + 5 + 17 + 24  # every row went to Triton
    ours = client.get_inference_statistics("demo_risk_mlp").model_stats[0]
    assert ours.execution_count <= ours.inference_count  # Hanzo formed the batches it sent
    assert client.get_model_metadata("demo_risk_mlp").inputs[0].name == name
