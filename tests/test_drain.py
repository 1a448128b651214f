"""SIGTERM under load: health says NOT_SERVING at once while calls are still served for the
drain delay (load balancers move away first), calls in flight finish, later calls are refused
UNAVAILABLE, and no call is ever CANCELLED (no retry policy retries it). The full-size run:
python -m hanzo.loadtest.drain."""
import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import ServerProcess, slow_config, slow_model

from hanzo.training.repository_writer import write_version
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow


def _calls(url: str, stop: threading.Event, outcomes: list):
    commerce = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(url))
    request = commerce_pb2.FeaturesRequest(entity="user", entity_ids=["u1"])
    while not stop.is_set():
        sent = time.monotonic()
        try:
            commerce.GetFeatures(request, timeout=10)
            outcomes.append((sent, "OK"))
        except grpc.RpcError as exc:
            outcomes.append((sent, exc.code().name))
        time.sleep(0.002)


@pytest.mark.parametrize("round_", range(3))
def test_sigterm_serves_through_the_delay_then_refuses_unavailable_never_cancelled(tmp_path, round_):
    root = tmp_path / "model_repo"
    write_version(root, slow_config(name="slow", max_batch_size=1), 1, slow_model(layers=2))
    server = ServerProcess(root, "--no-demo-models", "--drain-delay", "1.5").wait_ready()
    try:
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.url))
        stop, outcomes = threading.Event(), []
        threads = [threading.Thread(target=_calls, args=(server.url, stop, outcomes)) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.5 + 0.2 * round_)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.NOT_SERVING
        assert server.proc.wait(30) == 0, server.log()
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        server.terminate()
    codes = {code for _, code in outcomes}
    assert "CANCELLED" not in codes and codes <= {"OK", "UNAVAILABLE"}, codes
    during_delay = [code for sent, code in outcomes if signalled + 0.1 < sent < signalled + 1.3]
    assert during_delay and set(during_delay) == {"OK"}, "calls are served while load balancers move away"
    assert any(code == "UNAVAILABLE" for sent, code in outcomes if sent > signalled + 1.5)
    assert all(code == "OK" for sent, code in outcomes if sent < signalled)
