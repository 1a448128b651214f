"""Redis going away under a running server, for real: a redis-server of the test's own is
killed and started again on the same port and files. While it is away, reads and ingestion are
refused UNAVAILABLE naming Redis (never INTERNAL, never a hang); once it is back the same
server answers again without a restart, and every acknowledged event is in the log once."""
from __future__ import annotations

import shutil
import subprocess
import time

import grpc
import pytest
from helpers import ServerProcess

from hanzo.loadtest.targets import free_port
from hanzo.server.features.log import replay_log
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow


def start_redis(port: int, directory) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "yes", "--appendfsync", "always", "--dir", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("redis-server did not start")


def batch(start: int, n: int) -> commerce_pb2.EventBatch:
    request = commerce_pb2.EventBatch(request_id=f"b{start}")
    now = time.time()
    for i in range(start, start + n):
        event = request.events.add(event_id=f"e{i}", event_type="product_view", session_id="s", user_id=f"u{i % 4}")
        event.timestamp.FromSeconds(int(now) - 60 + i % 30)
        event.payload.product_id = f"p{i % 9}"
    return request


def test_redis_away_is_unavailable_and_the_server_recovers_without_a_restart(tmp_path):
    port = free_port()
    redis = start_redis(port, tmp_path)
    repo = tmp_path / "model_repo"
    repo.mkdir()
    server = ServerProcess(repo, "--no-demo-models", "--feature-backend", "redis", "--redis-url",
                           f"redis://127.0.0.1:{port}/0", "--data-dir", str(tmp_path / "data")).wait_ready()
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    acked: set[str] = set()
    try:
        stub.IngestEvents(batch(0, 20), timeout=10)
        acked.update(f"e{i}" for i in range(20))
        redis.kill()
        redis.wait(10)
        for call in (lambda: stub.GetFeatures(commerce_pb2.FeaturesRequest(entity="user", entity_ids=["u1"]),
                                              timeout=10),
                     lambda: stub.IngestEvents(batch(20, 20), timeout=10)):
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
            assert "Redis did not answer" in info.value.details() and time.monotonic() - started < 9
        redis = start_redis(port, tmp_path)  # back, with what its append-only file kept
        deadline = time.monotonic() + 20
        while True:
            try:
                ack = stub.IngestEvents(batch(20, 20), timeout=10)
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, exc.details()
                time.sleep(0.2)
        assert ack.accepted + ack.duplicates == 20
        acked.update(f"e{i}" for i in range(20, 40))
        reply = stub.GetFeatures(commerce_pb2.FeaturesRequest(entity="user", entity_ids=["u1"]), timeout=10)
        assert len(reply.columns) > 0
    finally:
        assert server.terminate() == 0
        redis.terminate()
        redis.wait(10)
    logged = [r["event_id"] for _, records in replay_log(tmp_path / "data" / "log") for r in records]
    assert acked <= set(logged) and len(logged) == len(set(logged))
