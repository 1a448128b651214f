"""The server process: Commerce contract served,
health and reflection, demo models and a simulated marketplace on an empty repository,
SIGTERM drains in-flight calls."""
import json
import signal
import subprocess
import sys
import threading
import time

import grpc
from google.protobuf import json_format
import numpy as np
import pytest
import tritonclient.grpc as tc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from helpers import SLOW_WIDTH, write_slow_model
from tritonclient.utils import InferenceServerException

from hanzo.v1 import admin_pb2, admin_pb2_grpc, commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow


def test_cli_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "hanzo.server.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("serve", "loadtest", "demo-models", "simulate", "ingest", "train", "eval", "forecast",
                    "plan-inventory", "recommend-batch"):
        assert command in out
    # every command's own help renders (a stray % in a help text breaks only that page)
    for command in (["serve"], ["simulate"], ["ingest"], ["train", "recommend"], ["train", "search"],
                    ["train", "fraud"], ["train", "pricing"], ["eval", "recommend"], ["eval", "search"],
                    ["eval", "fraud"], ["forecast"], ["plan-inventory"], ["recommend-batch"], ["loadtest"]):
        subprocess.run([sys.executable, "-m", "hanzo.server.cli", *command, "--help"], capture_output=True,
                       check=True)


def test_empty_repository_gets_demo_models_and_commerce_contract_answers(tmp_path, server_process):
    # A fresh machine: the demo models, and (torch being installed) a simulated marketplace
    # with its history in the store and trained Recommend and Search models.
    server = server_process(tmp_path / "model_repo", wait=False).wait_ready(timeout=300)
    assert (tmp_path / "model_repo" / "demo_risk_mlp" / "config.pbtxt").exists()
    demo = json.loads((tmp_path / "demo_world" / "demo.json").read_text())
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
    price = commerce.QuotePrice(commerce_pb2.PriceRequest(product_id=demo["product_id"]), timeout=5)
    assert price.price > 0 and price.explanation.startswith("Price") and price.model_version.startswith("demand-")

    with pytest.raises(grpc.RpcError) as info:  # no inventory plan configured
        commerce.PlanInventory(commerce_pb2.InventoryRequest(product_id="p1"), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "plan-inventory" in info.value.details()

    with pytest.raises(grpc.RpcError) as info:
        commerce.Search(commerce_pb2.SearchRequest(query="lamp"), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "k" in info.value.details()
    found = commerce.Search(commerce_pb2.SearchRequest(query=demo["query"], k=5), timeout=5)
    assert len(found.items) == 5 and found.items[0].source == "reranker" and found.model_version == "1"
    scored = commerce.ScoreFraud(json_format.ParseDict({"order": demo["order"]}, commerce_pb2.FraudRequest()),
                                 timeout=5)
    assert 0.0 <= scored.score <= 1.0 and scored.decision != commerce_pb2.DECISION_UNSPECIFIED
    assert scored.model_version == "1"
    shown = commerce.Recommend(commerce_pb2.RecommendRequest(request_id="r1", user_id=demo["user_id"], k=10),
                               timeout=5)
    assert len(shown.items) == 10 and not shown.fallback and shown.model_version == "1"
    features = commerce.GetFeatures(commerce_pb2.FeaturesRequest(entity="user", entity_ids=[demo["user_id"]]),
                                    timeout=5)
    assert features.entity_ids == [demo["user_id"]] and not all(features.missing)

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
    write_slow_model(root, name="slow", max_batch_size=1)
    server = server_process(root, "--no-demo-models")
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

    # Eight calls on a one-instance model: most are still queued when SIGTERM arrives.
    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.15)
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert outcomes == ["OK"] * 8, outcomes
    assert server.proc.wait(30) == 0
    log = server.log()
    assert '"msg": "draining"' in log and '"msg": "stopped"' in log
