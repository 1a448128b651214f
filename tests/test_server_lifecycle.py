"""The server process: health and reflection, the server's own latency histograms, a missing
model named with how to build it, SIGTERM drains in-flight calls. (The first start on an empty
repository: test_first_start.py.)"""
import signal
import threading
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from helpers import SLOW_WIDTH, slow_config, slow_model, until

from hanzo.training.repository_writer import write_version
from tritonclient.utils import InferenceServerException

from hanzo.loadtest.targets import free_port
from hanzo.v1 import admin_pb2, admin_pb2_grpc, commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow


def test_health_reflection_and_the_servers_own_latency(demo_repo, server_process):
    server = server_process(demo_repo, "--no-demo-models")
    channel = grpc.insecure_channel(server.url)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "hanzo.v1.Commerce", "inference.GRPCInferenceService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
            health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    reply = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in reply.list_services_response.service}
    assert {"hanzo.v1.Commerce", "hanzo.v1.Admin", "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names

    commerce = commerce_pb2_grpc.CommerceStub(channel)
    with pytest.raises(grpc.RpcError) as info:  # no inventory plan configured
        commerce.PlanInventory(commerce_pb2.InventoryRequest(product_id="p1"), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "plan-inventory" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        commerce.Search(commerce_pb2.SearchRequest(query="lamp", k=-1), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and info.value.details().startswith("k:")
    assert list(commerce.Search(commerce_pb2.SearchRequest(query="lamp"), timeout=5).items) == []

    # The server's own histogram counted those calls.
    report = admin_pb2_grpc.AdminStub(channel).GetLatency(admin_pb2.LatencyRequest(reset=True))
    methods = {m.method: m for m in report.methods}
    assert methods["/hanzo.v1.Commerce/Search"].count == 2
    assert methods["/hanzo.v1.Commerce/Search"].p99_us > 0
    again = admin_pb2_grpc.AdminStub(channel).GetLatency(admin_pb2.LatencyRequest())
    assert "/hanzo.v1.Commerce/Search" not in {m.method for m in again.methods}


def test_without_models_recommend_says_how_to_build_one(tmp_path, server_process):
    server = server_process(tmp_path / "model_repo", "--no-demo-models")
    commerce = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    with pytest.raises(grpc.RpcError) as info:
        commerce.Recommend(commerce_pb2.RecommendRequest(request_id="r1", user_id="u1", k=10), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "hanzo train recommend" in info.value.details()
    # Search without a model answers from BM25 (over an empty catalogue here: nothing).
    assert list(commerce.Search(commerce_pb2.SearchRequest(query="lamp", k=3), timeout=5).items) == []


def test_sigterm_drains_in_flight_calls_then_exits(tmp_path, server_process):
    root = tmp_path / "model_repo"
    # slow enough (hundreds of ms a call) that all eight arrive while the first one runs
    write_version(root, slow_config(name="slow", max_batch_size=1), 1, slow_model(layers=5000))
    metrics_port = free_port()
    server = server_process(root, "--no-demo-models", "--metrics-port", str(metrics_port))
    x = np.ones((1, SLOW_WIDTH), np.float32)
    outcomes: list[str] = []

    def call():
        client = tc.InferenceServerClient(server.url)
        tensor = tc.InferInput("x", [1, SLOW_WIDTH], "FP32")
        tensor.set_data_from_numpy(x)
        try:
            client.infer("slow", [tensor])
            outcomes.append("OK")
        except InferenceServerException as exc:
            outcomes.append(exc.status())

    def queued() -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("hanzo_inference_pending_request_count{") and 'model="slow"' in line)

    # Eight calls on a one-instance model: SIGTERM once all have arrived (one runs, seven wait).
    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    until(queued, lambda waiting: waiting >= 7, "the calls to queue up")
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert outcomes == ["OK"] * 8, outcomes
    assert server.proc.wait(30) == 0
    log = server.log()
    assert '"msg": "draining"' in log and '"msg": "stopped"' in log
