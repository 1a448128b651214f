"""Every RPC a real server registers (found through its own reflection, not a list kept here),
called four ways: without credentials, with a key of another scope, with the right scope for
another merchant (where the request names one), and with the right key. Each answers the
status its declared scope says. Admin actions, refused ones included, land in the audit log
that `hanzo audit` prints, and so do keys added and revoked while the server runs."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # and the service in the pool
from helpers import ServerProcess

from hanzo.server.api import admin, commerce, kserve
from hanzo.server.api.keys import SCOPES, KeyFile
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow

HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
AUTH = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def declared() -> dict[str, str]:
    """The scope each method's registration declares (server/app/server.py registers these)."""
    out = {f"/{commerce.SERVICE}/{m}": s for m, s in commerce.SCOPES.items()}
    out.update({f"/{kserve.SERVICE}/{m}": s for m, s in kserve.SCOPES.items()})
    for service, scope in ((admin.SERVICE, admin.SCOPE), (HEALTH, "health"), (REFLECTION, "reflection")):
        out.update({m: scope for m in registered_methods_of(service)})
    return out


def registered_methods_of(service: str) -> list[str]:
    from google.protobuf import descriptor_pool
    from grpc_health.v1 import health_pb2  # noqa: F401 - puts the health service in the pool

    return [f"/{service}/{m.name}" for m in descriptor_pool.Default().FindServiceByName(service).methods]


def served_methods(url: str, key: str) -> dict[str, tuple[bool, bool, bool]]:
    """{method: (client streaming, server streaming, takes a merchant_id)} from the server's reflection."""
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(url))
    metadata = (("authorization", f"Bearer {key}"),)

    def ask(**request):
        [answer] = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)]),
                                                  metadata=metadata, timeout=10))
        return answer

    services = [s.name for s in ask(list_services="").list_services_response.service]
    methods = {}
    for service in services:
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in ask(file_containing_symbol=service).file_descriptor_response.file_descriptor_proto]
        messages = {f".{f.package}.{m.name}": m for f in files for m in f.message_type}
        for f in files:
            for s in f.service:
                if f"{f.package}.{s.name}" != service:
                    continue
                for m in s.method:
                    fields = {field.name for field in messages[m.input_type].field} if m.input_type in messages else set()
                    methods[f"/{service}/{m.name}"] = (m.client_streaming, m.server_streaming, "merchant_id" in fields)
    return methods


def call(channel: grpc.Channel, method: str, shape: tuple[bool, bool, bool], key: str | None,
         merchant: str = "") -> grpc.StatusCode:
    client_streaming, server_streaming, takes_merchant = shape
    # field 1 is merchant_id in every Commerce request; an empty body is every message's default
    body = (b"\x0a" + bytes([len(merchant)]) + merchant.encode()) if takes_merchant and merchant else b""
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}[(client_streaming,
                                                                                      server_streaming)]
    request = iter([body]) if client_streaming else body
    try:
        answer = kind(method)(request, metadata=metadata, timeout=10)
        if server_streaming:
            next(iter(answer), None)  # the first answer says whether it was let in
            answer.cancel()
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()


def test_every_registered_rpc_answers_as_its_scope_says(tmp_path):
    keys = KeyFile(tmp_path / "keys.json")
    secrets = {scope: keys.add([scope], ["m1"], f"{scope}-m1")[1] for scope in SCOPES}
    (tmp_path / "repo").mkdir()
    data_dir = tmp_path / "data"
    server = ServerProcess(tmp_path / "repo", "--no-demo-models", "--keys-file", str(tmp_path / "keys.json"),
                           "--data-dir", str(data_dir)).wait_ready()
    try:
        methods = served_methods(server.url, secrets["admin"])
        scopes = declared()
        assert set(methods) == set(scopes), "a served RPC without a declared scope, or a declared one not served"
        channel = grpc.insecure_channel(server.url)
        table = []
        for method, shape in sorted(methods.items()):
            scope = scopes[method]
            needed = "admin" if scope in ("health", "reflection") else scope
            other = next(s for s in SCOPES if s != needed)
            open_ = scope == "health"  # [access] health_open is on by default, reflection_open off
            row = {"none": call(channel, method, shape, None, "m1"),
                   "wrong scope": call(channel, method, shape, secrets[other], "m1"),
                   "right": call(channel, method, shape, secrets[needed], "m1")}
            if shape[2]:
                row["wrong merchant"] = call(channel, method, shape, secrets[needed], "m2")
                assert row["wrong merchant"] == grpc.StatusCode.PERMISSION_DENIED, (method, row)
            assert (row["none"] not in AUTH) if open_ else (row["none"] == grpc.StatusCode.UNAUTHENTICATED), \
                (method, row)
            assert (row["wrong scope"] not in AUTH) if open_ else (row["wrong scope"] ==
                                                                  grpc.StatusCode.PERMISSION_DENIED), (method, row)
            assert row["right"] not in AUTH, (method, row)
            table.append(method)
            if method.rsplit("/", 1)[-1] in kserve.AUDITED | admin.AUDITED:
                time.sleep(0.25)  # the audit records at most 10 refusals a second: these two are kept
        assert len(table) == len(scopes) and any(methods[m][2] for m in table)

        # a key bound to a merchant may not change the catalogue every merchant shares
        stub = commerce_pb2_grpc.CommerceStub(channel)
        batch = commerce_pb2.EventBatch(merchant_id="m1")
        for kind, payload in (("catalog_update", {"product_id": "p1", "title": "mine now"}),
                              ("product_view", {"product_id": "p1"})):
            event = batch.events.add(event_id=f"e-{kind}", event_type=kind, user_id="u1", session_id="s1")
            event.timestamp.GetCurrentTime()
            for name, value in payload.items():
                setattr(event.payload, name, value)
        ack = stub.IngestEvents(batch, metadata=(("authorization", f"Bearer {secrets['ingest']}"),), timeout=10)
        assert ack.accepted == 1 and [(r.index, r.field) for r in ack.rejects] == [(0, "event_type")]

        keys.revoke("ingest-m1")  # read again by the running server, and audited
        deadline = time.monotonic() + 20
        while call(channel, f"/{commerce.SERVICE}/IngestEvents", methods[f"/{commerce.SERVICE}/IngestEvents"],
                   secrets["ingest"], "m1") != grpc.StatusCode.UNAUTHENTICATED:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        server.terminate()

    printed = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "audit", "--data-dir", str(data_dir),
                              "--json"], capture_output=True, text=True, timeout=60, check=True).stdout
    records = [json.loads(line) for line in printed.splitlines()]
    unload = [r for r in records if r["what"] == f"/{kserve.SERVICE}/RepositoryModelUnload"]
    assert [r["result"] for r in unload] == ["UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND"], unload
    assert unload[0]["who"].startswith("anonymous from ") and unload[2]["who"] == "admin-m1"
    assert unload[1]["who"] == "decide-m1" and "needs the scope 'admin'" in unload[1]["reason"]
    assert any(r["what"] == "key revoked" and r["key"] == "ingest-m1" for r in records)
    assert all(r["time"].endswith("Z") for r in records)
    refused = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "audit", "--data-dir", str(data_dir),
                              "--refused", "--who", "decide-m1"], capture_output=True, text=True, timeout=60,
                             check=True).stdout
    assert "RepositoryModelUnload  PERMISSION_DENIED" in refused and "  OK" not in refused
