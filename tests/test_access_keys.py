"""API keys with scopes, checked before any RPC by a real server: no key or an unknown one is
UNAUTHENTICATED, a key without the method's scope PERMISSION_DENIED naming the scope it needs,
health stays open by configuration, and `hanzo keys revoke` takes effect without a restart."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import ServerProcess

from hanzo.server.api import admin, commerce, kserve
from hanzo.server.api.keys import KeyFile
from hanzo.server.api.services import add_service
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

pytestmark = pytest.mark.slow


def hanzo_keys(*args: str) -> dict | list:
    done = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "keys", *args], capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_every_method_declares_the_scope_the_docs_give_it():
    assert commerce.SCOPES["Recommend"] == commerce.SCOPES["GetFeatures"] == "decide"
    assert commerce.SCOPES["IngestEvents"] == "ingest"
    assert kserve.SCOPES["ModelInfer"] == kserve.SCOPES["ModelMetadata"] == "infer"
    assert kserve.SCOPES["RepositoryModelUnload"] == kserve.SCOPES["RepositoryModelLoad"] == "admin"
    assert kserve.SCOPES["ServerReady"] == "health" and admin.SCOPE == "admin"


def test_a_method_without_a_declared_scope_is_not_registered():
    async def register(scopes):
        server = grpc.aio.server()
        servicer = commerce_pb2_grpc.CommerceServicer()
        return add_service(server, servicer, commerce.SERVICE, scopes)

    partial = {name: scope for name, scope in commerce.SCOPES.items() if name != "IngestEvents"}
    with pytest.raises(ValueError, match="IngestEvents declares no scope"):
        asyncio.run(register(partial))
    declared = asyncio.run(register(commerce.SCOPES))
    assert declared["/hanzo.v1.Commerce/IngestEvents"] == "ingest" and len(declared) == len(commerce.SCOPES)


def test_the_keys_file_holds_digests_only_and_refuses_unknown_scopes(tmp_path):
    keys = KeyFile(tmp_path / "keys.json")
    entry, secret = keys.add(["decide"], ["m1"], "edge")
    text = (tmp_path / "keys.json").read_text()
    assert secret not in text and entry.sha256 in text
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="scopes must be some of"):
        keys.add(["root"], [], "bad")
    with pytest.raises(ValueError, match="no key named 'nobody'"):
        keys.revoke("nobody")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ValueError, match="cannot be read"):
        KeyFile(tmp_path / "dir.json").entries()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".keys.json.") and not p.name.endswith(".lock")]


def test_a_server_with_keys_checks_every_call_and_reads_revocations_without_a_restart(tmp_path):
    keys_file = tmp_path / "keys.json"
    decide = hanzo_keys("add", "--file", str(keys_file), "--scopes", "decide", "--name", "edge")["key"]
    admin = hanzo_keys("add", "--file", str(keys_file), "--scopes", "admin,infer", "--name", "ops")["key"]
    (tmp_path / "repo").mkdir()
    server = ServerProcess(tmp_path / "repo", "--no-demo-models", "--keys-file", str(keys_file)).wait_ready()
    try:
        channel = grpc.insecure_channel(server.url)
        commerce = commerce_pb2_grpc.CommerceStub(channel)
        kserve = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = commerce_pb2.FeaturesRequest(entity="user", entity_ids=["u1"])

        def code(call, *args, key=None, header="authorization"):
            metadata = () if key is None else ((header, f"Bearer {key}" if header == "authorization" else key),)
            try:
                call(*args, metadata=metadata, timeout=10)
                return grpc.StatusCode.OK, ""
            except grpc.RpcError as exc:
                return exc.code(), exc.details()

        assert code(commerce.GetFeatures, request)[0] == grpc.StatusCode.UNAUTHENTICATED
        assert code(commerce.GetFeatures, request, key="hz_wrong")[0] == grpc.StatusCode.UNAUTHENTICATED
        assert code(commerce.GetFeatures, request, key=decide)[0] == grpc.StatusCode.OK
        assert code(commerce.GetFeatures, request, key=decide, header="x-api-key")[0] == grpc.StatusCode.OK
        denied = code(kserve.RepositoryModelUnload, service_pb2.RepositoryModelUnloadRequest(model_name="x"),
                      key=decide)
        assert denied[0] == grpc.StatusCode.PERMISSION_DENIED and "'admin'" in denied[1] and "'edge'" in denied[1]
        assert code(kserve.RepositoryIndex, service_pb2.RepositoryIndexRequest(), key=admin)[0] == grpc.StatusCode.OK
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # open without a key (health_open)
        assert decide not in server.log() and admin not in server.log()
        hanzo_keys("revoke", "--file", str(keys_file), "edge")
        deadline = time.monotonic() + 10
        while code(commerce.GetFeatures, request, key=decide)[0] == grpc.StatusCode.OK:
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.2)
        assert code(commerce.GetFeatures, request, key=decide)[0] == grpc.StatusCode.UNAUTHENTICATED
        assert code(kserve.RepositoryIndex, service_pb2.RepositoryIndexRequest(), key=admin)[0] == grpc.StatusCode.OK
        assert [k["name"] for k in hanzo_keys("list", "--file", str(keys_file))] == ["ops"]
    finally:
        server.terminate()
