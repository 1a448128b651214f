"""RepositoryModelLoad with `file:` overrides through a real server, with tritonclient's own gRPC
and HTTP clients (load_model(..., config=..., files=...)): a model the repository does not hold
loaded from the files sent, a repository model served from sent files until a load without them,
and every key that could reach outside the server's own folder refused naming the parameter."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from helpers import ServerProcess

from hanzo.loadtest.targets import free_port
from hanzo.training.triton_example_models import build_triton_examples

CONFIG = {"name": "{name}", "platform": "onnxruntime_onnx", "max_batch_size": 8,
          "input": [{"name": n, "data_type": "TYPE_INT32", "dims": [16]} for n in ("INPUT0", "INPUT1")],
          "output": [{"name": n, "data_type": "TYPE_INT32", "dims": [16]} for n in ("OUTPUT0", "OUTPUT1")]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("overrides") / "repo"
    build_triton_examples(root)
    process = ServerProcess(root, "--no-demo-models", "--http-port", str(free_port())).wait_ready()
    process.root = root
    yield process
    assert process.terminate() == 0


def config(name: str) -> str:
    return json.dumps(CONFIG).replace("{name}", name)


def add(client, module, model: str, a: int = 2, b: int = 3) -> tuple[int, int]:
    tensors = [module.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    tensors[0].set_data_from_numpy(np.full((1, 16), a, np.int32))
    tensors[1].set_data_from_numpy(np.full((1, 16), b, np.int32))
    result = client.infer(model, tensors)
    return int(result.as_numpy("OUTPUT0")[0, 0]), int(result.as_numpy("OUTPUT1")[0, 0])


def test_a_model_loads_from_the_files_sent_with_its_config(server):
    client = grpcclient.InferenceServerClient(server.url)
    onnx_bytes = (Path(server.root) / "simple" / "1" / "model.onnx").read_bytes()
    client.load_model("uploaded", config=config("uploaded"), files={"file:3/model.onnx": onnx_bytes})
    assert client.is_model_ready("uploaded", "3")
    assert add(client, grpcclient, "uploaded") == (5, -1)
    assert not (Path(server.root) / "uploaded").exists()  # never written into the repository
    with pytest.raises(InferenceServerException, match="not in the repository"):
        client.load_model("uploaded")  # without files: the repository's folder, and it has none
    client.unload_model("uploaded")
    assert not client.is_model_ready("uploaded")


def test_files_sent_replace_a_repository_model_until_a_load_without_them(server):
    client = grpcclient.InferenceServerClient(server.url)
    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    int8 = (Path(server.root) / "simple" / "1" / "model.onnx").read_bytes()
    # the same graph as version 7 over HTTP (base64 in JSON): the repository's version 1 retires
    http.load_model("simple", config=config("simple"), files={"file:7/model.onnx": int8})
    assert client.is_model_ready("simple", "7") and not client.is_model_ready("simple", "1")
    assert add(http, httpclient, "simple") == (5, -1)
    client.load_model("simple")  # back to the repository's folder
    assert client.is_model_ready("simple", "1") and not client.is_model_ready("simple", "7")


@pytest.mark.parametrize("key, message", [
    ("file:../evil/model.onnx", "must be file:<version>/<file name>"),
    ("file:1/../../evil", "a file name is made of parts"),
    ("file:1//etc/passwd", "a file name is made of parts"),
    ("file:0/model.onnx", "version number of 1 or more"),
    ("file:model.onnx", "must be file:<version>/<file name>"),
])
def test_a_key_that_could_leave_the_servers_folder_is_refused(server, tmp_path, key, message):
    client = grpcclient.InferenceServerClient(server.url)
    with pytest.raises(InferenceServerException, match=message) as e:
        client.load_model("evil", config=config("evil"), files={key: b"x"})
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert not any(p.name == "evil" for p in Path(server.root).parent.rglob("evil"))


def test_files_without_a_config_or_undecodable_are_refused(server):
    client = grpcclient.InferenceServerClient(server.url)
    with pytest.raises(InferenceServerException, match=r'parameters\["config"\]: file: overrides need a config'):
        client.load_model("lonely", files={"file:1/model.onnx": b"x"})
    body = json.dumps({"parameters": {"config": config("lonely"), "file:1/model.onnx": "not base64!"}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/v2/repository/models/lonely/load",
                                     data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 400 and "base64" in json.loads(e.value.read())["error"]
    with pytest.raises(InferenceServerException, match="failed to load"):  # bytes that are no model
        client.load_model("junk", config=config("junk"), files={"file:1/model.onnx": b"not onnx"})


def test_two_keys_for_one_file_are_refused(server):
    client = grpcclient.InferenceServerClient(server.url)
    for files, message in (({"file:1/model.onnx": b"a", "file:01/model.onnx": b"b"}, "names the same file as"),
                           ({"file:1/a": b"a", "file:1/a/b": b"b"}, "as a folder, but")):
        with pytest.raises(InferenceServerException, match=message) as e:
            client.load_model("clash", config=config("clash"), files=files)
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
