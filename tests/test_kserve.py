"""The KServe V2 protocol end to end: a real `hanzo serve` process on a loopback port,
NVIDIA's tritonclient as the client, answers compared with onnxruntime run directly."""
import concurrent.futures
import json

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tc
from helpers import SLOW_WIDTH, write_slow_model
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from hanzo.training.demo_models import RISK_FEATURES, TOWER_CONTEXT, TOWER_HISTORY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from helpers import ServerProcess

    from hanzo.training.demo_models import build_demo_repository

    root = tmp_path_factory.mktemp("kserve") / "model_repo"
    build_demo_repository(root)
    write_slow_model(root, name="slow", max_batch_size=1, max_queue_size=1)
    config = root.parent / "hanzo.toml"
    config.write_text("[server]\nmax_message_bytes = 1048576\nlog_format = \"json\"\n")
    server = ServerProcess(root, "--config", str(config)).wait_ready()
    yield server, root
    assert server.terminate() == 0, server.log()


@pytest.fixture
def client(served):
    return tc.InferenceServerClient(served[0].url)


def demo_inputs(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        "demo_risk_mlp": {"features": rng.standard_normal((rows, RISK_FEATURES)).astype(np.float32)},
        "demo_user_tower": {"history": rng.integers(-5, 1200, (rows, TOWER_HISTORY)).astype(np.int64),
                            "context": rng.standard_normal((rows, TOWER_CONTEXT)).astype(np.float32)},
        "slow": {"x": rng.standard_normal((rows, SLOW_WIDTH)).astype(np.float32)},
    }


def infer_inputs(arrays):
    inputs = []
    for name, value in arrays.items():
        tensor = tc.InferInput(name, list(value.shape), {np.float32: "FP32", np.int64: "INT64"}[value.dtype.type])
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def test_server_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "hanzo" and "model_repository" in meta["extensions"]
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {(m["name"], m["version"], m["state"]) for m in index} == {
        ("demo_risk_mlp", "1", "READY"), ("demo_user_tower", "1", "READY"), ("slow", "1", "READY")}
    tower = client.get_model_metadata("demo_user_tower", as_json=True)
    assert tower["platform"] == "onnxruntime_onnx" and tower["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in tower["inputs"]] == [
        ("history", "INT64", ["-1", str(TOWER_HISTORY)]), ("context", "FP32", ["-1", str(TOWER_CONTEXT)])]
    config = client.get_model_config("demo_risk_mlp", as_json=True)["config"]
    assert config["max_batch_size"] == 64 and config["input"][0]["name"] == "features"
    assert client.is_model_ready("demo_risk_mlp") and not client.is_model_ready("nope")


@pytest.mark.parametrize("model", ["demo_risk_mlp", "demo_user_tower"])
def test_infer_matches_onnxruntime(client, served, model):
    session = ort.InferenceSession(str(served[1] / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    for rows in (1, 5, 64):
        arrays = demo_inputs(rows, seed=rows)[model]
        result = client.infer(model, infer_inputs(arrays), request_id=f"r{rows}")
        assert result.get_response().id == f"r{rows}"
        assert result.get_response().model_version == "1"
        for output, expected in zip(session.get_outputs(), session.run(None, arrays)):
            np.testing.assert_allclose(result.as_numpy(output.name), expected, rtol=1e-5, atol=1e-6)


def test_concurrent_requests_batch_and_statistics_count_them(client, served):
    before = client.get_inference_statistics("demo_risk_mlp", as_json=True)["model_stats"][0]
    arrays = [demo_inputs(1, seed=s)["demo_risk_mlp"] for s in range(40)]
    session = ort.InferenceSession(str(served[1] / "demo_risk_mlp" / "1" / "model.onnx"))

    def call(x):
        return tc.InferenceServerClient(served[0].url).infer("demo_risk_mlp", infer_inputs(x)).as_numpy("score")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, arrays))
    for got, x in zip(results, arrays):
        np.testing.assert_allclose(got, session.run(None, x)[0], rtol=1e-5, atol=1e-6)
    after = client.get_inference_statistics("demo_risk_mlp", as_json=True)["model_stats"][0]
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 40
    assert int(after["inference_stats"]["success"]["count"]) - int(
        before["inference_stats"].get("success", {}).get("count", 0)) == 40
    assert after["batch_stats"]


def test_typed_contents_are_accepted(served):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(served[0].url))
    x = demo_inputs(2)["demo_risk_mlp"]["features"]
    request = service_pb2.ModelInferRequest(model_name="demo_risk_mlp")
    tensor = request.inputs.add(name="features", datatype="FP32", shape=[2, RISK_FEATURES])
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    response = stub.ModelInfer(request)
    got = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(2, 1)
    session = ort.InferenceSession(str(served[1] / "demo_risk_mlp" / "1" / "model.onnx"))
    np.testing.assert_allclose(got, session.run(None, {"features": x})[0], rtol=1e-5, atol=1e-6)


def expect_error(code: str, match: str, call, *args, **kwargs):
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    assert info.value.status() == f"StatusCode.{code}", info.value
    assert match in info.value.message(), info.value.message()


def test_bad_inputs_get_invalid_argument_naming_the_field(client):
    def infer(model, arrays, outputs=None):
        return client.infer(model, infer_inputs(arrays), outputs=outputs)

    expect_error("NOT_FOUND", "Request for unknown model: 'nope' is not found", infer, "nope",
                 demo_inputs(1)["demo_risk_mlp"])
    expect_error("INVALID_ARGUMENT", 'input "features": shape [2, 31]', infer, "demo_risk_mlp",
                 {"features": np.zeros((2, 31), np.float32)})
    expect_error("INVALID_ARGUMENT", 'input "features": datatype INT64', infer, "demo_risk_mlp",
                 {"features": np.zeros((2, 32), np.int64)})
    expect_error("INVALID_ARGUMENT", 'input "extra": model', infer, "demo_risk_mlp",
                 {**demo_inputs(1)["demo_risk_mlp"], "extra": np.zeros((1, 1), np.float32)})
    expect_error("INVALID_ARGUMENT", 'input "context": missing', infer, "demo_user_tower",
                 {"history": np.zeros((1, TOWER_HISTORY), np.int64)})
    expect_error("INVALID_ARGUMENT", "batch size 65 exceeds max_batch_size 64", infer, "demo_risk_mlp",
                 demo_inputs(65)["demo_risk_mlp"])
    expect_error("INVALID_ARGUMENT", "batch size 3 differs from 2", infer, "demo_user_tower",
                 {"history": np.zeros((2, TOWER_HISTORY), np.int64), "context": np.zeros((3, TOWER_CONTEXT),
                                                                                           np.float32)})
    expect_error("INVALID_ARGUMENT", 'output "nope"', infer, "demo_risk_mlp", demo_inputs(1)["demo_risk_mlp"],
                 [tc.InferRequestedOutput("nope")])


def test_unknown_models_and_versions_are_worded_as_triton_words_them(client):
    """Triton's clients and examples match on these sentences (simple_grpc_health_metadata,
    grpc_explicit_int8_content_client)."""
    inputs = infer_inputs(demo_inputs(1)["demo_risk_mlp"])
    expect_error("NOT_FOUND", "Request for unknown model: 'wrong_model_name' is not found", client.get_model_metadata,
                 "wrong_model_name")
    expect_error("NOT_FOUND", "Request for unknown model: 'demo_risk_mlp' version 7 is not found", client.infer,
                 "demo_risk_mlp", inputs, model_version="7")
    expect_error("INVALID_ARGUMENT", "failed to get model version from specified version string "
                 "'wrong_specification'", client.infer, "demo_risk_mlp", inputs, model_version="wrong_specification")
    expect_error("INVALID_ARGUMENT", "invalid model version specified '-1'", client.infer, "demo_risk_mlp", inputs,
                 model_version="-1")


def test_failed_call_is_logged_with_request_id_and_model(client, served):
    with pytest.raises(InferenceServerException):
        client.infer("demo_risk_mlp", infer_inputs({"features": np.zeros((1, 3), np.float32)}),
                     request_id="trace-me-42")
    lines = [json.loads(line) for line in served[0].log().splitlines() if "trace-me-42" in line]
    assert lines and lines[0]["code"] == "INVALID_ARGUMENT" and lines[0]["model"] == "demo_risk_mlp"
    assert lines[0]["model_version"] == "latest" and 'input "features"' in lines[0]["reason"]


def test_raw_content_of_the_wrong_size(served):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(served[0].url))
    request = service_pb2.ModelInferRequest(model_name="demo_risk_mlp")
    request.inputs.add(name="features", datatype="FP32", shape=[1, RISK_FEATURES])
    request.raw_input_contents.append(b"\0" * 12)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert 'input "features": raw content has 12 bytes' in info.value.details()


def test_message_size_limit(client):
    big = {"features": np.zeros((64, RISK_FEATURES * 200), np.float32)}  # 1.6 MiB > 1 MiB limit
    with pytest.raises(InferenceServerException) as info:
        client.infer("demo_risk_mlp", infer_inputs(big))
    assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_deadline_exceeded_and_queue_full_on_a_slow_model(served):
    url = served[0].url
    x = demo_inputs(1)["slow"]
    expect_error("DEADLINE_EXCEEDED", "", tc.InferenceServerClient(url).infer, "slow", infer_inputs(x),
                 client_timeout=0.005)

    def call(_):
        try:
            tc.InferenceServerClient(url).infer("slow", infer_inputs(x))
            return "OK"
        except InferenceServerException as exc:
            return exc.status()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(call, range(8)))
    assert "StatusCode.RESOURCE_EXHAUSTED" in outcomes and "OK" in outcomes, outcomes
    stats = tc.InferenceServerClient(url).get_inference_statistics("slow", as_json=True)["model_stats"][0]
    assert int(stats["inference_stats"]["fail"]["count"]) >= outcomes.count("StatusCode.RESOURCE_EXHAUSTED")


def test_repository_load_and_unload(client, served):
    client.unload_model("slow")
    assert not client.is_model_ready("slow")
    expect_error("NOT_FOUND", "Request for unknown model: 'slow' has no available versions", client.infer, "slow",
                 infer_inputs(demo_inputs(1)["slow"]))
    unloaded = [(m.name, m.version, m.state, m.reason) for m in client.get_model_repository_index().models
                if m.name == "slow"]
    assert unloaded == [("slow", "1", "UNAVAILABLE", "unloaded")]  # still listed, as Triton lists it
    client.load_model("slow")
    assert client.is_model_ready("slow")


def test_what_is_not_served_is_refused_by_name(client, served):
    """Nothing accepted and ignored: a load parameter Triton does not have, the classification
    extension, a sequence id or a priority sent to a model without sequences or levels, and shared
    memory each answer that they are not served."""
    with grpc.insecure_channel(served[0].url) as channel:
        request = service_pb2.RepositoryModelLoadRequest(model_name="slow")
        request.parameters["files"].bytes_param = b"not a model"
        with pytest.raises(grpc.RpcError) as info:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).RepositoryModelLoad(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert 'parameters["files"]: is not a load parameter' in info.value.details()
    expect_error("INVALID_ARGUMENT", "the classification extension is not served", client.infer, "demo_risk_mlp",
                 infer_inputs(demo_inputs(1)["demo_risk_mlp"]), outputs=[tc.InferRequestedOutput("score", class_count=2)])
    expect_error("INVALID_ARGUMENT", 'parameters["sequence_id"]: model \'demo_risk_mlp\' is not a sequence model',
                 client.infer, "demo_risk_mlp", infer_inputs(demo_inputs(1)["demo_risk_mlp"]), sequence_id=7,
                 sequence_start=True)
    expect_error("INVALID_ARGUMENT", 'parameters["priority"]: model \'demo_risk_mlp:1\' has no priority levels',
                 client.infer, "demo_risk_mlp",
                 infer_inputs(demo_inputs(1)["demo_risk_mlp"]), priority=5)
    expect_error("FAILED_PRECONDITION", "system shared memory is off", client.register_system_shared_memory, "region",
                 "/key", 64)  # a server started without --shared-memory-prefix
    expect_error("UNIMPLEMENTED", "not served", client.get_cuda_shared_memory_status)
