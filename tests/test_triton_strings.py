"""BYTES (TYPE_STRING) tensors end to end through a real server, with tritonclient's own gRPC
client and hand-built requests as NVIDIA's explicit-content examples send them: strings parsed
and summed by an ONNX model, arbitrary text returned as it came, typed bytes_contents and INT8
int_contents, and malformed string tensors refused naming the input."""
from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor

from helpers import ServerProcess

from hanzo.training.triton_example_models import build_triton_examples


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("strings")
    build_triton_examples(root / "repo")
    process = ServerProcess(root / "repo", "--no-demo-models").wait_ready()
    yield process
    assert process.terminate() == 0


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def test_string_sums_with_tritonclient(server):
    client = grpcclient.InferenceServerClient(server.url)
    first = np.array([[str(i).encode() for i in range(16)]], dtype=object)
    second = np.array([["1"] * 16], dtype=object)  # str elements: the client encodes them as UTF-8
    inputs = [grpcclient.InferInput("INPUT0", [1, 16], "BYTES"), grpcclient.InferInput("INPUT1", [1, 16], "BYTES")]
    inputs[0].set_data_from_numpy(first)
    inputs[1].set_data_from_numpy(second)
    result = client.infer("simple_string", inputs)
    sums, differences = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")
    assert sums.dtype == object and sums.shape == (1, 16)
    assert [int(x) for x in sums[0]] == [i + 1 for i in range(16)]
    assert [int(x) for x in differences[0]] == [i - 1 for i in range(16)]
    metadata = client.get_model_metadata("simple_string")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("INPUT0", "BYTES", [-1, 16]), ("INPUT1", "BYTES", [-1, 16])]


@pytest.mark.parametrize("element", ["he\x00llo".encode(), b"\x00\x01\x02\x03", "préférence ✓".encode(), b""])
def test_text_comes_back_as_it_went(server, element):
    client = grpcclient.InferenceServerClient(server.url)
    data = np.array([[element] * 5, [element + b"!"] * 5], dtype=object)
    tensor = grpcclient.InferInput("INPUT0", [2, 5], "BYTES")
    tensor.set_data_from_numpy(data)
    out = client.infer("simple_identity", [tensor]).as_numpy("OUTPUT0")
    assert out.shape == (2, 5) and out.tolist() == data.tolist()


def _bytes_request(first: list[bytes], second: list[bytes]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="simple_string")
    for name, values in (("INPUT0", first), ("INPUT1", second)):
        tensor = request.inputs.add(name=name, datatype="BYTES", shape=[1, len(values)])
        tensor.contents.bytes_contents.extend(values)
    return request


def test_explicit_bytes_contents(stub):
    """As grpc_explicit_byte_content_client sends them: bytes_contents, outputs read from
    raw_output_contents in order."""
    response = stub.ModelInfer(_bytes_request([str(i).encode() for i in range(16)], [b"1"] * 16), timeout=10)
    assert [o.name for o in response.outputs] == ["OUTPUT0", "OUTPUT1"]
    sums = deserialize_bytes_tensor(response.raw_output_contents[0])
    differences = deserialize_bytes_tensor(response.raw_output_contents[1])
    assert [int(x) for x in sums] == list(range(1, 17)) and [int(x) for x in differences] == list(range(-1, 15))


def test_int8_int_contents_keep_their_low_byte(stub):
    request = pb.ModelInferRequest(model_name="simple_int8")
    for name, values in (("INPUT0", list(range(16))), ("INPUT1", [1] * 15 + [257])):
        tensor = request.inputs.add(name=name, datatype="INT8", shape=[1, 16])
        tensor.contents.int_contents.extend(values)
    response = stub.ModelInfer(request, timeout=10)
    sums = np.frombuffer(response.raw_output_contents[0], np.int8)
    assert sums.tolist() == [i + 1 for i in range(16)]  # 257 travels as int32 and is 1 as an int8


def test_contents_beside_raw_contents_are_refused_in_tritons_words(stub):
    """grpc_explicit_int_content_client looks for this sentence."""
    request = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        tensor = request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        tensor.contents.int_contents.extend(range(16))
    request.raw_input_contents.extend([np.arange(16, dtype=np.int32).tobytes()] * 2)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("contents field must not be specified when using raw_input_contents for 'INPUT0' for model 'simple'"
            in info.value.details())


def _raw(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


@pytest.mark.parametrize("shape, raw, words", [
    ([1, 2], _raw([b"ab"]) + struct.pack("<I", 50) + b"xy", "element 1 says 50 bytes"),
    ([1, 2], _raw([b"ab", b"cd"]) + b"\x00", "1 bytes after its 2 elements"),
    ([1 << 20, 1 << 20], _raw([b"a"]), "too few for the"),
    ([1, 2], _raw([b"ab", b"\xff\xfe"]), "element 1 is not UTF-8 text"),
])
def test_malformed_string_tensors_are_refused_naming_the_input(stub, shape, raw, words):
    request = pb.ModelInferRequest(model_name="simple_identity")
    request.inputs.add(name="INPUT0", datatype="BYTES", shape=shape)
    request.raw_input_contents.append(raw)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert info.value.details().startswith('input "INPUT0"') and words in info.value.details(), info.value.details()


def test_a_batch_of_strings_from_many_callers(server):
    """Concurrent requests batch together; each gets its own rows back."""
    from concurrent.futures import ThreadPoolExecutor

    client = grpcclient.InferenceServerClient(server.url)

    def ask(i: int) -> bool:
        tensor = grpcclient.InferInput("INPUT0", [1, 3], "BYTES")
        data = np.array([[f"caller {i}".encode(), b"x" * i, b""]], dtype=object)
        tensor.set_data_from_numpy(data)
        return client.infer("simple_identity", [tensor]).as_numpy("OUTPUT0").tolist() == data.tolist()

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(ask, range(64)))


def test_a_shape_of_another_rank_is_refused_before_its_size_is_taken(stub):
    request = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        request.inputs.add(name=name, datatype="INT32", shape=[1] * 65)
        request.raw_input_contents.append(np.zeros(1, np.int32).tobytes())
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "has 65 dimensions, but the model's [-1, 16] has 2" in info.value.details()


def test_outputs_asked_for_twice_are_refused(stub):
    request = _bytes_request([b"1"] * 16, [b"2"] * 16)
    request.outputs.add(name="OUTPUT0")
    request.outputs.add(name="OUTPUT0")
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "given twice" in info.value.details()
