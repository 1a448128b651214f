"""Metrics as a Triton user's dashboards read them: `--metrics-names triton` writes the per-model
counters under Triton's names and label sets (no `_total`, every failure reason at 0 from the
load), and RPC durations carry the status code in both modes, for the gRPC and the HTTP port."""
from __future__ import annotations

import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from helpers import ServerProcess, until

from hanzo.loadtest.targets import free_port
from hanzo.training.triton_example_models import build_triton_examples


def _page(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def _ask_simple(url: str, n: int) -> None:
    client = grpcclient.InferenceServerClient(url)
    for _ in range(n):
        tensors = [grpcclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
        for tensor in tensors:
            tensor.set_data_from_numpy(np.ones((1, 16), np.int32))
        client.infer("simple", tensors)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics-names") / "repo"
    build_triton_examples(root)
    return root


def test_triton_names_and_label_sets(repo):
    metrics_port = free_port()
    server = ServerProcess(repo, "--no-demo-models", "--metrics-port", str(metrics_port), "--metrics-names",
                           "triton").wait_ready()
    try:
        _ask_simple(server.url, 3)
        text = until(lambda: _page(metrics_port),
                     lambda page: 'nv_inference_request_success{model="simple",version="1"} 3' in page,
                     "three successes counted")
        lines = text.splitlines()
        # Triton's exact lines: alphabetical labels, integers, every reason at 0 before any failure
        for reason in ("BACKEND", "CANCELED", "OTHER", "REJECTED"):
            assert f'nv_inference_request_failure{{model="simple",reason="{reason}",version="1"}} 0' in lines
        assert "# TYPE nv_inference_request_success counter" in lines
        assert "# TYPE nv_inference_pending_request_count gauge" in lines
        families = {f.name: f for f in text_string_to_metric_families(text)}
        count = {s.labels["model"]: s.value for s in families["nv_inference_count"].samples}
        assert count["simple"] == 3 and count["simple_string"] == 0
        assert families["nv_inference_compute_infer_duration_us"].type == "counter"
        assert "hanzo_inference_request_success" not in families  # one name per series
        assert "hanzo_model_ready" in families and "hanzo_rpc_duration_seconds" in families
    finally:
        server.terminate()


def test_rpc_durations_carry_the_status_code_on_both_ports(repo):
    metrics_port, http_port = free_port(), free_port()
    server = ServerProcess(repo, "--no-demo-models", "--metrics-port", str(metrics_port), "--http-port",
                           str(http_port)).wait_ready()
    try:
        _ask_simple(server.url, 2)
        with pytest.raises(InferenceServerException):
            grpcclient.InferenceServerClient(server.url).get_model_metadata("nope")
        http = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
        assert http.get_model_metadata("simple")["name"] == "simple"
        with pytest.raises(InferenceServerException):
            http.get_model_metadata("nope")

        def counts() -> dict[tuple[str, str], float]:
            families = {f.name: f for f in text_string_to_metric_families(_page(metrics_port))}
            return {(s.labels["method"], s.labels["code"]): s.value
                    for s in families["hanzo_rpc_duration_seconds"].samples if s.name.endswith("_count")}

        got = until(counts, lambda c: ("/inference.GRPCInferenceService/ModelMetadata", "NOT_FOUND") in c,
                    "the failed call recorded")
        assert got[("/inference.GRPCInferenceService/ModelInfer", "OK")] == 2
        assert got[("HTTP ModelMetadata", "OK")] == 1 and got[("HTTP ModelMetadata", "NOT_FOUND")] == 1
        families = {f.name: f for f in text_string_to_metric_families(_page(metrics_port))}
        failures = {s.labels["reason"]: s.value for s in families["hanzo_inference_request_failure"].samples
                    if s.labels["model"] == "simple"}
        assert failures == {"backend": 0, "deadline": 0, "queue_full": 0}  # declared before any failure
    finally:
        server.terminate()
