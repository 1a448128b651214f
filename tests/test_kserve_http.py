"""The KServe V2 HTTP/REST port through a real server, with tritonclient.http as NVIDIA's HTTP
examples use it (JSON and binary tensors side by side, strings both ways, compression both
ways, health, metadata, config, statistics, repository control) and with plain HTTP for what a
probe or curl sees: Triton's status codes and `{"error": ...}` bodies."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from helpers import ServerProcess, until

from hanzo.loadtest.targets import free_port
from hanzo.server.api.keys import KeyFile
from hanzo.training.triton_example_models import build_triton_examples


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("http")
    build_triton_examples(root / "repo")
    process = ServerProcess(root / "repo", "--no-demo-models", "--http-port", str(free_port())).wait_ready()
    yield process
    assert process.terminate() == 0, process.log()


@pytest.fixture
def client(server):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    yield client
    client.close()


def _http(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of one plain HTTP call."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", data=body, method=method,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _pair(client, model: str, first: np.ndarray, second: np.ndarray, datatype: str, binary_in=(False, True),
          binary_out=(True, False), **kwargs):
    inputs = []
    for name, data, binary in (("INPUT0", first, binary_in[0]), ("INPUT1", second, binary_in[1])):
        tensor = httpclient.InferInput(name, list(data.shape), datatype)
        tensor.set_data_from_numpy(data, binary_data=binary)
        inputs.append(tensor)
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_out[0]),
               httpclient.InferRequestedOutput("OUTPUT1", binary_data=binary_out[1])]
    return client.infer(model, inputs, outputs=outputs, **kwargs)


def test_health_metadata_config_and_statistics(client, server):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("simple")
    assert not client.is_model_ready("wrong_model_name")
    metadata = client.get_server_metadata()
    assert metadata["name"] == "hanzo" and "binary_tensor_data" in metadata["extensions"]
    model = client.get_model_metadata("simple", query_params={"test_1": 1})
    assert model["name"] == "simple" and model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
                               {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]}]
    config = client.get_model_config("simple_string")
    assert config["max_batch_size"] == 8 and config["input"][0]["data_type"] == "TYPE_STRING"
    assert config["input"][0]["dims"] == [16]
    with pytest.raises(InferenceServerException, match="Request for unknown model: 'wrong_model_name' is not found"):
        client.get_model_metadata("wrong_model_name")
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/simple/ready", "/v2/models/simple/versions/1/ready"):
        status, _, body = _http(server, "GET", path)
        assert status == 200 and body == b"", path  # what a Kubernetes httpGet probe reads
    status, _, body = _http(server, "GET", "/v2/models/simple/versions/9/ready")
    assert status == 404 and "version 9 is not found" in json.loads(body)["error"]


def test_infer_with_json_and_binary_tensors_side_by_side(client):
    """As simple_http_infer_client: INPUT0 in JSON, INPUT1 binary; OUTPUT0 binary, OUTPUT1 JSON."""
    first = np.arange(16, dtype=np.int32)[None]
    second = np.full((1, 16), -1, dtype=np.int32)
    result = _pair(client, "simple", first, second, "INT32", query_params={"test_1": 1, "test_2": 2})
    assert result.as_numpy("OUTPUT0").tolist() == (first + second).tolist()
    assert result.as_numpy("OUTPUT1").tolist() == (first - second).tolist()
    output = result.get_output("OUTPUT0")
    assert output["parameters"]["binary_data_size"] == 64 and "data" in result.get_output("OUTPUT1")
    # no outputs named: every output, binary (binary_data_output)
    tensors = [httpclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    tensors[0].set_data_from_numpy(first)
    tensors[1].set_data_from_numpy(second)
    every = client.infer("simple", tensors)
    assert every.as_numpy("OUTPUT1").tolist() == (first - second).tolist()
    stats = client.get_inference_statistics(model_name="simple")
    assert len(stats["model_stats"]) == 1 and stats["model_stats"][0]["inference_count"] >= 2
    assert isinstance(stats["model_stats"][0]["inference_stats"]["success"]["count"], int)


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compressed_requests_and_answers(client, compression):
    first = np.arange(16, dtype=np.int32).reshape(1, 16)
    result = _pair(client, "simple", first, first, "INT32", binary_in=(True, True), binary_out=(True, True),
                   request_compression_algorithm=compression, response_compression_algorithm=compression)
    assert result.as_numpy("OUTPUT0").tolist() == (2 * first).tolist()


@pytest.mark.parametrize("binary_in, binary_out", [((True, False), (True, False)), ((False, False), (False, False)),
                                                   ((True, True), (True, True))])
def test_strings_both_ways(client, binary_in, binary_out):
    """As simple_http_string_infer_client: decimal strings summed, in JSON or binary each way."""
    first = np.array([[str(i).encode() for i in range(16)]], dtype=object)
    second = np.array([[b"1"] * 16], dtype=object)
    result = _pair(client, "simple_string", first, second, "BYTES", binary_in, binary_out)
    assert [int(x) for x in result.as_numpy("OUTPUT0")[0]] == list(range(1, 17))
    assert [int(x) for x in result.as_numpy("OUTPUT1")[0]] == list(range(-1, 15))


@pytest.mark.parametrize("binary", [True, False])
def test_text_with_nuls_comes_back_as_it_went(client, binary):
    data = np.array([["he\x00llo".encode()] * 16], dtype=object)
    tensor = httpclient.InferInput("INPUT0", [1, 16], "BYTES")
    tensor.set_data_from_numpy(data, binary_data=binary)
    result = client.infer("simple_identity", [tensor],
                          outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)])
    assert [bytes(str(x), "utf-8") if isinstance(x, str) else x for x in result.as_numpy("OUTPUT0")[0]] == \
        data[0].tolist()


def test_repository_index_load_and_unload(client):
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert set(index) == {"simple", "simple_int8", "simple_string", "simple_identity", "simple_sequence"}
    assert index["simple"]["state"] == "READY" and index["simple"]["version"] == "1"
    client.unload_model("simple_int8")
    assert not client.is_model_ready("simple_int8")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["simple_int8"] == {"name": "simple_int8", "version": "1", "state": "UNAVAILABLE",
                                    "reason": "unloaded"}
    client.load_model("simple_int8")
    assert client.is_model_ready("simple_int8")
    with pytest.raises(InferenceServerException, match="failed to load 'wrong_model_name'"):
        client.load_model("wrong_model_name")  # simple_http_model_control looks for "failed to load"
    # as simple_http_model_control: a config override that does not parse, then one that does
    with pytest.raises(InferenceServerException, match="failed to load 'simple'"):
        client.load_model("simple", config='"parameters": {"config": {{"max_batch_size": "16"}}}')
    client.load_model("simple", config='{"max_batch_size":"16"}')
    assert client.get_model_config("simple")["max_batch_size"] == 16 and client.is_model_ready("simple")
    client.load_model("simple")  # without an override: config.pbtxt again
    assert client.get_model_config("simple")["max_batch_size"] == 8


def _nested(depth: int) -> list:
    data: list = [0]
    for _ in range(depth):
        data = [data]
    return data


def _infer_body(shape=(1, 16), datatype="INT32", data=None, outputs=None, parameters=None) -> bytes:
    """An infer body for `simple` with one field changed."""
    tensor = {"name": "INPUT0", "datatype": datatype, "shape": list(shape),
              "data": data if data is not None else list(range(16))}
    body = {"inputs": [tensor, {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}
    if outputs is not None:
        body["outputs"] = outputs
    if parameters is not None:
        body["parameters"] = parameters
    return json.dumps(body).encode()


@pytest.mark.parametrize("method, path, body, status, words", [
    ("GET", "/v2/nowhere", None, 404, "Not Found"),
    ("GET", "/v2/models/simple/versions/abc", None, 404, "Not Found"),
    ("DELETE", "/v2/models/simple", None, 405, "Method Not Allowed"),
    ("POST", "/v2/models/simple/infer", b"{not json", 400, "failed to parse the request JSON"),
    ("POST", "/v2/models/simple/infer", b'{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16]}]}',
     400, "must set exactly one of 'data', 'binary_data_size' and 'shared_memory_region'"),
    ("POST", "/v2/models/simple/infer", b'{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 2], '
                                        b'"data": [1, 2]}]}', 400, 'input "INPUT0": shape [1, 2]'),
    ("POST", "/v2/models/simple/infer", b'{"parameters": {"triton_x": 1}}', 400, "reserved for Triton"),
    ("POST", "/v2/models/nope/infer", b"{}", 404, "Request for unknown model: 'nope' is not found"),
    ("POST", "/v2/repository/index", b'{"ready": "yes"}', 400, "expected a boolean"),
    ("POST", "/v2/models/simple/infer", b'{"inputs": [{"name": "INPUT0", "datatype": "FP16", "shape": [1], '
                                        b'"data": [1.5]}]}', 400, "receiving FP16 data via JSON is not supported"),
    ("POST", "/v2/models/simple/infer", b'{"parameters": {"sequence_id": 7}}', 400, "is not a sequence "
                                                                                "model"),
    # what an outside review of the port sent it: each a 400 naming the field, in bounded time
    ("POST", "/v2/models/simple/infer", _infer_body(outputs=[{"name": "OUTPUT0"}] * 2), 400, "given twice"),
    ("POST", "/v2/models/simple/infer", _infer_body(shape=[1] * 65), 400, "at most 64"),
    ("POST", "/v2/models/simple/infer", _infer_body(shape=[1 << 63, 16]), 400, "int64 dimensions"),
    ("POST", "/v2/models/simple/infer", _infer_body(shape=[(1 << 62)] * 60, data=[]), 400, "larger than any tensor"),
    ("POST", "/v2/models/simple/infer", _infer_body(datatype=[]), 400, "invalid datatype"),
    ("POST", "/v2/models/simple/infer", _infer_body(data=_nested(500)), 400,
     "nested more than 64"),
    ("POST", "/v2/models/simple/infer", _infer_body(data=[1.5] * 16), 400, "INT32 data must be integers"),
    ("POST", "/v2/models/simple/infer", _infer_body(data=[1 << 40] * 16), 400, "does not fit INT32"),
    ("POST", "/v2/models/simple/infer", _infer_body(parameters={"timeout": 1 << 63}), 400, "positive int64"),
    ("POST", "/v2/models/simple/infer", _infer_body(outputs=[{"name": "OUTPUT0", "parameters": {"binary_data": "false"}}]),
     400, "must be true or false"),
    ("POST", "/v2/models/simple/infer", _infer_body(shape=[1, 2, 8]), 400, "has 3 dimensions"),
    ("POST", "/v2/repository/models/simple/load", b'{"parameters": 5}', 400, "parameters: must be a JSON object"),
])
def test_bad_calls_get_tritons_status_and_an_error_body(server, method, path, body, status, words):
    got, headers, answer = _http(server, method, path, body)
    assert got == status, answer
    assert words in json.loads(answer)["error"], answer


def test_a_body_that_does_not_decompress_is_refused(server):
    status, _, answer = _http(server, "POST", "/v2/models/simple/infer", b"not gzip at all" * 4,
                              {"Content-Encoding": "gzip"})
    assert status == 400 and "could not be read" in json.loads(answer)["error"]
    assert "Traceback" not in server.log()


def test_a_raw_binary_body_is_refused(server):
    status, _, answer = _http(server, "POST", "/v2/models/simple/infer", b"\x00" * 64,
                              {"Inference-Header-Content-Length": "0"})
    assert status == 400 and "raw binary body" in json.loads(answer)["error"]


def test_binary_data_that_runs_short_is_refused(server):
    head = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16],
                                   "parameters": {"binary_data_size": 64}}]}).encode()
    status, _, answer = _http(server, "POST", "/v2/models/simple/infer", head + b"\x00" * 10,
                              {"Inference-Header-Content-Length": str(len(head))})
    assert status == 400 and "expecting 64 bytes of binary data, but 10 are left" in json.loads(answer)["error"]


def test_the_port_asks_for_the_same_keys_as_the_grpc_port(tmp_path):
    keys = KeyFile(tmp_path / "keys.json")
    _, infer = keys.add(["infer"], ["*"], "edge")
    _, admin = keys.add(["admin"], ["*"], "sre")
    build_triton_examples(tmp_path / "repo")
    server = ServerProcess(tmp_path / "repo", "--no-demo-models", "--keys-file", str(tmp_path / "keys.json"),
                           "--http-port", str(free_port())).wait_ready()
    try:
        url = f"127.0.0.1:{server.http_port}"
        assert httpclient.InferenceServerClient(url).is_server_live()  # health stays open ([access] health_open)
        with pytest.raises(InferenceServerException, match="no API key"):
            httpclient.InferenceServerClient(url).get_model_metadata("simple")
        edge = httpclient.InferenceServerClient(url)
        headers = {"Authorization": f"Bearer {infer}"}
        assert edge.get_model_metadata("simple", headers=headers)["name"] == "simple"
        with pytest.raises(InferenceServerException, match="needs the scope 'admin'"):
            edge.unload_model("simple", headers=headers)
        edge.unload_model("simple", headers={"Authorization": f"Bearer {admin}"})
        assert not edge.is_model_ready("simple", headers=headers)
        path = tmp_path / f"data-{server.port}" / "audit.jsonl"

        def unloads() -> list[tuple[str, str, str]]:  # the audit log is written by a thread of its own
            lines = path.read_text().splitlines() if path.exists() else []
            return [(r["what"], r["result"], r["who"]) for r in map(json.loads, lines) if "Unload" in r["what"]]

        assert until(unloads, lambda got: len(got) == 2, "the audit lines") == [
            ("HTTP RepositoryModelUnload", "PERMISSION_DENIED", "edge"), ("HTTP RepositoryModelUnload", "OK", "sre")]
    finally:
        server.terminate()
