"""ModelStreamInfer through a real server with tritonclient's own streaming client (as
simple_grpc_sequence_stream_infer and the aio variant use it, without sequences): every request
answered on the stream with its id, failures answered in-stream without ending it, many
requests in flight on one stream, and a stream's requests counted in the server's metrics."""
from __future__ import annotations

import queue
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from prometheus_client.parser import text_string_to_metric_families

from helpers import ServerProcess, until

from hanzo.loadtest.targets import free_port
from hanzo.training.triton_example_models import build_triton_examples


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream") / "repo"
    build_triton_examples(root)
    process = ServerProcess(root, "--no-demo-models", "--metrics-port", str(free_port())).wait_ready()
    yield process
    assert process.terminate() == 0


def _inputs(module, first: int):
    tensors = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    tensors[0].set_data_from_numpy(np.full((1, 16), first, np.int32))
    tensors[1].set_data_from_numpy(np.ones((1, 16), np.int32))
    return tensors


def test_a_stream_answers_every_request_and_keeps_going_past_a_failure(server):
    answers: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(server.url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(100):
            client.async_stream_infer("simple", _inputs(grpcclient, i), request_id=f"r{i}")
        client.async_stream_infer("nope", _inputs(grpcclient, 0), request_id="bad")
        client.async_stream_infer("simple", _inputs(grpcclient, 1000), request_id="after")
        got = {}
        errors = []
        for _ in range(102):
            result, error = answers.get(timeout=30)
            if error is not None:
                errors.append(error)
            else:
                got[result.get_response().id] = result.as_numpy("OUTPUT0")
    finally:
        client.stop_stream()
    assert len(errors) == 1 and "Request for unknown model: 'nope' is not found" in errors[0].message()
    assert set(got) == {f"r{i}" for i in range(100)} | {"after"}
    assert all((got[f"r{i}"] == i + 1).all() for i in range(100)) and (got["after"] == 1001).all()
    stats = client.get_inference_statistics("simple").model_stats[0]
    assert stats.execution_count <= stats.inference_count  # the stream's requests batched with each other

    def streamed() -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "hanzo_rpc_duration_seconds_count"
                   and s.labels["method"] == "/inference.GRPCInferenceService/ModelStreamInfer")

    assert until(streamed, lambda n: n >= 102, "the stream's requests counted") == 102


async def test_the_asyncio_client_streams_too(server):
    async with aioclient.InferenceServerClient(server.url) as client:
        async def requests():
            for i in range(20):
                yield {"model_name": "simple", "inputs": _inputs(aioclient, i), "request_id": str(i)}

        seen = {}
        async for result, error in client.stream_infer(requests()):
            assert error is None, error
            seen[result.get_response().id] = int(result.as_numpy("OUTPUT0")[0, 0])
        assert seen == {str(i): i + 1 for i in range(20)}
