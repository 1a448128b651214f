"""Replicas sharing the Redis store agree on the catalogue: a product created, repriced and
sold out through one server is quoted the same way by another a moment later (the catalogue
feed), and a replica restarted from its snapshot counts no change twice. `hanzo serve
--workers 2` runs two processes on one port and stops them together."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest


from helpers import HANG_GUARD_S

from hanzo.loadtest.readiness import wait_until_ready
from hanzo.loadtest.targets import free_port
from hanzo.server.pricing.demand_model import DemandModel
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow


def _event(event_id: str, kind: str, payload: dict, ts: str = "2026-01-05T10:00:00Z") -> commerce_pb2.Event:
    event = commerce_pb2.Event(event_id=event_id, event_type=kind, session_id="s")
    event.timestamp.FromJsonString(ts)
    for key, value in payload.items():
        if key == "category":
            event.payload.category.extend(value)
        else:
            setattr(event.payload, key, value)
    return event


def _quote(url: str, product: str):
    with grpc.insecure_channel(url) as channel:
        return commerce_pb2_grpc.CommerceStub(channel).QuotePrice(commerce_pb2.PriceRequest(product_id=product),
                                                                   timeout=5)


def _eventually(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, grpc.RpcError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def pricing_config(tmp_path):
    model = DemandModel(["known"], ["Kitchen"], np.array([5.0]), np.array([10.0]), np.array([np.log(4.0)]),
                        np.array([-2.0]), np.zeros((1, 7)), np.array([40.0]), np.array([8.0]), np.array([12.0]),
                        {"Kitchen": -2.0}, "v-replicas")
    model.save(tmp_path / "demand.npz")
    path = tmp_path / "hanzo.toml"
    path.write_text(f'[pricing]\nmodel = "{tmp_path / "demand.npz"}"\nmax_change = 0.5\n')
    return path


def test_replicas_agree_on_the_catalogue(demo_repo, server_process, redis_client, redis_server, pricing_config,
                                         tmp_path):
    extra = ("--feature-backend", "redis", "--redis-url", redis_server, "--config", str(pricing_config))
    a = server_process(demo_repo, *extra, "--data-dir", str(tmp_path / "a"))
    b = server_process(demo_repo, *extra, "--data-dir", str(tmp_path / "b"))
    with pytest.raises(grpc.RpcError) as info:
        _quote(b.url, "mug-1")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(a.url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        ack = stub.IngestEvents(commerce_pb2.EventBatch(events=[
            _event("c1", "catalog_update", {"product_id": "mug-1", "title": "Blue mug", "category": ["Kitchen", "Mugs"],
                                            "price": 10.0, "cost": 5.0, "stock": 30.0})]), timeout=5)
        assert ack.accepted == 1
    quote = _eventually(lambda: _quote(b.url, "mug-1"))
    assert quote.explanation.startswith("Price") and quote.price >= 5.5
    # repriced and sold out through A: B quotes from the new price, and holds it while out of stock
    with grpc.insecure_channel(a.url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        stub.IngestEvents(commerce_pb2.EventBatch(events=[
            _event("c2", "price_change", {"product_id": "mug-1", "price": 14.0}, "2026-01-05T11:00:00Z"),
            _event("c3", "stock_update", {"product_id": "mug-1", "quantity": 0.0}, "2026-01-05T11:00:01Z")]),
            timeout=5)

    def held() -> None:
        answer = _quote(b.url, "mug-1")
        assert answer.price == 14.0 and "out of stock" in answer.explanation, answer

    _eventually(held)
    # B restarts from a snapshot it wrote after applying A's changes: the same answer, nothing doubled
    with grpc.insecure_channel(b.url) as channel:
        commerce_pb2_grpc.CommerceStub(channel).IngestEvents(commerce_pb2.EventBatch(events=[
            _event("b1", "stock_update", {"product_id": "mug-1", "quantity": 3.0}, "2026-01-05T12:00:00Z")]),
            timeout=5)
    _eventually(lambda: _check_stock(a.url, "mug-1"))
    assert b.terminate() == 0
    b2 = server_process(demo_repo, *extra, "--data-dir", str(tmp_path / "b"))
    assert "Price" in _quote(b2.url, "mug-1").explanation and "out of stock" not in _quote(b2.url, "mug-1").explanation


def _check_stock(url: str, product: str) -> None:
    assert "out of stock" not in _quote(url, product).explanation


def test_workers_share_one_port(demo_repo, redis_client, redis_server, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hanzo.server.commands", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--model-repo", str(demo_repo), "--data-dir", str(tmp_path / "data"),
                             "--feature-backend", "redis", "--redis-url", redis_server, "--workers", "2"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "2 workers on port" in line, line
        url = f"127.0.0.1:{port}"
        wait_until_ready(url, proc, HANG_GUARD_S, lambda: "")
        workers = [tmp_path / "data" / f"worker-{i}" for i in range(2)]
        while not all(w.is_dir() for w in workers):  # the second worker may come up after the first
            assert proc.poll() is None, "the workers exited"
            time.sleep(0.1)
        deadline = time.monotonic() + HANG_GUARD_S
        for _ in range(10):  # fresh connections land on either worker
            while True:
                with grpc.insecure_channel(url) as channel:
                    stub = commerce_pb2_grpc.CommerceStub(channel)
                    try:
                        stub.GetFeatures(commerce_pb2.FeaturesRequest(entity="user", entity_ids=["u1"]), timeout=5)
                        break
                    except grpc.RpcError as exc:  # the other worker may still be loading: it says so, and is waited for
                        assert exc.code() == grpc.StatusCode.UNAVAILABLE and "not serving yet" in exc.details(), exc
                        assert time.monotonic() < deadline and proc.poll() is None, "a worker never came up"
                        time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_workers_need_the_shared_store(demo_repo, tmp_path):
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "serve", "--port", str(free_port()),
                          "--model-repo", str(demo_repo), "--data-dir", str(tmp_path), "--workers", "2"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--feature-backend redis" in run.stderr
