"""System shared memory through a real server, as NVIDIA's simple_grpc_shm_client uses it
(tritonclient's own shared-memory utilities): regions registered, inputs read from one and
outputs written into another, status and unregister; only /dev/shm names under the server's
prefix may be named, never a path, and the feature is off unless the server is given one."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from helpers import ServerProcess

from hanzo.training.triton_example_models import build_triton_examples


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("shm") / "repo"
    build_triton_examples(root)
    return root


def test_inputs_and_outputs_cross_in_shared_memory(repo):
    server = ServerProcess(repo, "--no-demo-models", "--shared-memory-prefix", "/hanzo_test_").wait_ready()
    inputs = shm.create_shared_memory_region("input_data", "/hanzo_test_input", 128)
    outputs = shm.create_shared_memory_region("output_data", "/hanzo_test_output", 128)
    try:
        first, second = np.arange(16, dtype=np.int32)[None], np.full((1, 16), 5, dtype=np.int32)
        shm.set_shared_memory_region(inputs, [first, second])
        client = grpcclient.InferenceServerClient(server.url)
        client.register_system_shared_memory("input_data", "/hanzo_test_input", 128)
        client.register_system_shared_memory("output_data", "/hanzo_test_output", 128)
        status = client.get_system_shared_memory_status()
        assert {name: (r.key, r.byte_size) for name, r in status.regions.items()} == {
            "input_data": ("/hanzo_test_input", 128), "output_data": ("/hanzo_test_output", 128)}
        tensors = [grpcclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
        tensors[0].set_shared_memory("input_data", 64)
        tensors[1].set_shared_memory("input_data", 64, offset=64)
        wanted = [grpcclient.InferRequestedOutput(name) for name in ("OUTPUT0", "OUTPUT1")]
        wanted[0].set_shared_memory("output_data", 64)
        wanted[1].set_shared_memory("output_data", 64, offset=64)
        client.infer("simple", tensors, outputs=wanted)
        sums = shm.get_contents_as_numpy(outputs, np.int32, [1, 16])
        differences = shm.get_contents_as_numpy(outputs, np.int32, [1, 16], offset=64)
        assert (sums == first + second).all() and (differences == first - second).all()
        with pytest.raises(InferenceServerException, match="outside shared memory region 'input_data'"):
            tensors[1].set_shared_memory("input_data", 64, offset=100)
            client.infer("simple", tensors)
        for key, words in (("/../../etc/passwd", "not a path"), ("/elsewhere", "starting with '/hanzo_test_'"),
                           ("/hanzo_test_absent", "cannot be opened")):
            with pytest.raises(InferenceServerException, match=words):
                client.register_system_shared_memory("more", key, 16)
        client.unregister_system_shared_memory("input_data")
        assert list(client.get_system_shared_memory_status().regions) == ["output_data"]
        client.unregister_system_shared_memory()
        assert not client.get_system_shared_memory_status().regions
    finally:
        server.terminate()
        shm.destroy_shared_memory_region(inputs)
        shm.destroy_shared_memory_region(outputs)


def test_shared_memory_is_off_without_a_prefix(repo):
    server = ServerProcess(repo, "--no-demo-models").wait_ready()
    try:
        client = grpcclient.InferenceServerClient(server.url)
        with pytest.raises(InferenceServerException, match="system shared memory is off"):
            client.register_system_shared_memory("region", "/hanzo_x", 16)
    finally:
        server.terminate()


def test_the_http_port_uses_the_same_regions(repo):
    """As simple_http_shm_client: regions registered over HTTP, tensors named in them."""
    import tritonclient.http as httpclient

    from hanzo.loadtest.targets import free_port

    http_port = free_port()
    server = ServerProcess(repo, "--no-demo-models", "--shared-memory-prefix", "/hanzo_http_", "--http-port",
                           str(http_port)).wait_ready()
    inputs = shm.create_shared_memory_region("input_data", "/hanzo_http_input", 128)
    outputs = shm.create_shared_memory_region("output_data", "/hanzo_http_output", 128)
    try:
        first, second = np.arange(16, dtype=np.int32)[None], np.full((1, 16), 2, dtype=np.int32)
        shm.set_shared_memory_region(inputs, [first, second])
        client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
        client.register_system_shared_memory("input_data", "/hanzo_http_input", 128)
        client.register_system_shared_memory("output_data", "/hanzo_http_output", 128)
        assert {r["name"] for r in client.get_system_shared_memory_status()} == {"input_data", "output_data"}
        tensors = [httpclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
        tensors[0].set_shared_memory("input_data", 64)
        tensors[1].set_shared_memory("input_data", 64, offset=64)
        wanted = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
                  httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)]
        wanted[0].set_shared_memory("output_data", 64)
        result = client.infer("simple", tensors, outputs=wanted)
        assert (shm.get_contents_as_numpy(outputs, np.int32, [1, 16]) == first + second).all()
        assert result.get_output("OUTPUT0")["parameters"]["shared_memory_region"] == "output_data"
        assert (result.as_numpy("OUTPUT1") == first - second).all()  # the other output, as JSON
        client.unregister_system_shared_memory()
        assert client.get_system_shared_memory_status() == []
        with pytest.raises(httpclient.InferenceServerException, match="not a path"):
            client.register_system_shared_memory("bad", "/../etc/passwd", 16)
    finally:
        server.terminate()
        shm.destroy_shared_memory_region(inputs)
        shm.destroy_shared_memory_region(outputs)
