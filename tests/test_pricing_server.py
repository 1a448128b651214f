"""QuotePrice through a real server: a demand model trained by `hanzo train pricing` on a
simulated shop's log (price experiments on), the catalogue and history ingested, quotes that
keep the rules and explain themselves, the caller's context taking precedence over the
catalogue, the model reloaded when retrained, bad requests refused by field, and a folder of
model versions under a production pointer."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from helpers import metric_samples, until

from hanzo.loadtest.targets import free_port
from hanzo.server.features.events import record_to_proto
from hanzo.server.models.production import read_pointer
from hanzo.server.pricing.demand_model import DemandModel
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow


def _cli(*args: str) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("pricing")
    world = root / "world"
    _cli("simulate", "--out", str(world), "--users", "400", "--products", "40", "--days", "40", "--seed", "3",
         "--price-experiments", "0.2")
    report = root / "report.json"
    _cli("train", "pricing", "--events", str(world / "events.jsonl.gz"), "--catalog", str(world / "catalog.jsonl"),
         "--out", str(root / "demand.npz"), "--truth", str(world / "truth.json"), "--report", str(report))
    _cli("ingest", str(world / "events.jsonl.gz"), "--data-dir", str(root / "data"), "--catalog",
         str(world / "catalog.jsonl"))
    (root / "hanzo.toml").write_text(f'[pricing]\nmodel = "{root / "demand.npz"}"\nmax_change = 0.15\n')
    catalog = {p["product_id"]: p for p in map(json.loads, open(world / "catalog.jsonl"))}
    return root, catalog, json.loads(report.read_text())


def test_train_pricing_reports_its_fit(shop):
    _, catalog, report = shop
    assert report["products_fitted"] >= 30 and report["categories"] >= 5
    assert -4 < report["median_elasticity"] < 0
    assert report["recovery"]["all"]["products"] == report["products_fitted"]
    assert set(report["holdout"]["wape"]) == {"model", "no_price"}


def test_quote_price_over_grpc(shop, demo_repo, server_process):
    root, catalog, _ = shop
    server = server_process(demo_repo, "--config", str(root / "hanzo.toml"), "--data-dir", str(root / "data"))
    model = DemandModel.load(root / "demand.npz")
    product_id = model.product_id[0]
    cost = float(model.cost[0])
    with grpc.insecure_channel(server.url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        answer = stub.QuotePrice(commerce_pb2.PriceRequest(product_id=product_id, request_id="q1"), timeout=5)
        assert answer.request_id == "q1" and answer.model_version == model.version
        assert answer.price >= round(1.1 * cost, 2) and answer.expected_units >= 0
        assert answer.expected_profit == pytest.approx((answer.price - cost) * answer.expected_units, rel=1e-6)
        assert answer.explanation.startswith("Price ")

        # the caller's context wins over the catalogue: one unit left for a week of a good
        # seller sells dear (even at a quarter of its usual traffic)
        seller = int(np.argmax(np.where(model.b1 < -0.3, model.b0, -np.inf)))
        assert 7 * 0.25 * np.exp(model.b0[seller]) > 1.5
        current = round(float(model.reference_price[seller]), 2)
        context = {"current_price": f"{current:.2f}", "stock": "1", "days_to_restock": "7"}
        scarce = stub.QuotePrice(commerce_pb2.PriceRequest(product_id=model.product_id[seller], context=context),
                                 timeout=5)
        assert scarce.price == pytest.approx(round(current * 1.15, 2), abs=0.011)
        assert list(scarce.active_constraints) == ["price_consistency"]
        assert "low inventory (1 in stock" in scarce.explanation and "increased 15.0%" in scarce.explanation
        gone = stub.QuotePrice(commerce_pb2.PriceRequest(product_id=model.product_id[seller],
                                                         context={**context, "stock": "0"}), timeout=5)
        assert gone.price == current and gone.expected_units == 0 and "out of stock" in gone.explanation
        # a competitor under the margin floor: the floor wins, and the response says so
        floor = stub.QuotePrice(commerce_pb2.PriceRequest(
            product_id=product_id, competitor_prices=[cost * 0.5, 0.9 * cost],
            context={"current_price": f"{1.2 * cost:.2f}"}), timeout=5)
        assert floor.price == pytest.approx(np.ceil(1.1 * cost * 100 - 1e-9) / 100)
        assert list(floor.active_constraints) == ["margin_floor", "competitor_parity:violated"]
        assert "Competitor parity could not hold" in floor.explanation

        for request, code, field in (
                (commerce_pb2.PriceRequest(), grpc.StatusCode.INVALID_ARGUMENT, "product_id"),
                (commerce_pb2.PriceRequest(product_id=product_id, competitor_prices=[9.0, -1.0]),
                 grpc.StatusCode.INVALID_ARGUMENT, "competitor_prices[1]"),
                (commerce_pb2.PriceRequest(product_id=product_id, context={"cost": "abc"}),
                 grpc.StatusCode.INVALID_ARGUMENT, "context[cost]"),
                (commerce_pb2.PriceRequest(product_id=product_id, context={"days_to_restock": "0"}),
                 grpc.StatusCode.INVALID_ARGUMENT, "context[days_to_restock]"),
                (commerce_pb2.PriceRequest(product_id=product_id, context={"location": "Atlantis"}),
                 grpc.StatusCode.INVALID_ARGUMENT, "context[location]"),
                (commerce_pb2.PriceRequest(product_id="no-such-product"), grpc.StatusCode.NOT_FOUND, "product")):
            with pytest.raises(grpc.RpcError) as info:
                stub.QuotePrice(request, timeout=5)
            assert info.value.code() == code and info.value.details().startswith(field), info.value.details()

        # a retrained model is picked up without a restart
        model.b1[:] = -0.3
        model.version = "demand-retrained"
        model.save(root / "demand.npz")
        # the server looks at the file at most once a second: asked until the new model answers
        again = until(lambda: stub.QuotePrice(commerce_pb2.PriceRequest(product_id=product_id), timeout=5),
                      lambda a: a.model_version == "demand-retrained", "the retrained model")
        assert again.model_version == "demand-retrained" and "inelastic" in again.explanation


def test_purchases_at_a_quoted_price_are_joined_to_the_quote(shop, demo_repo, server_process):
    """QuotePrice -> purchases of that product at that price within the window: counted per
    demand-model version, with their units, revenue and margin; a purchase at another price is
    the shop not taking the quote, and counts for nothing."""
    root, _, _ = shop
    metrics_port = free_port()
    server = server_process(demo_repo, "--config", str(root / "hanzo.toml"), "--data-dir", str(root / "data"),
                            "--metrics-port", str(metrics_port))
    model = DemandModel.load(root / "demand.npz")
    product_id, cost = model.product_id[0], float(model.cost[0])
    with grpc.insecure_channel(server.url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        answer = stub.QuotePrice(commerce_pb2.PriceRequest(product_id=product_id), timeout=5)
        now = int(time.time() * 1000) + 1000
        batch = commerce_pb2.EventBatch(request_id="quote-outcomes")
        for i, (price, quantity) in enumerate(((answer.price, 2.0), (answer.price + 0.004, 1.0),
                                               (round(answer.price * 1.2, 2), 5.0))):
            record_to_proto({"event_id": f"bought-{i}", "event_type": "purchase", "timestamp": now + i,
                             "user_id": f"buyer-{i}", "session_id": f"s-{i}",
                             "payload": {"product_id": product_id, "price": price, "quantity": quantity}},
                            batch.events.add())
        assert not stub.IngestEvents(batch, timeout=10).rejects
    labels = {"model_version": f"pricing:{answer.model_version}"}
    purchases = until(lambda: metric_samples(metrics_port, "hanzo_pricing_quote_purchases_total", labels),
                      lambda n: n >= 2, "the purchases joined")
    assert purchases == 2 and metric_samples(metrics_port, "hanzo_pricing_quotes_total", labels) == 1
    assert metric_samples(metrics_port, "hanzo_pricing_quote_units_total", labels) == 3
    revenue = answer.price * 2 + (answer.price + 0.004)
    assert metric_samples(metrics_port, "hanzo_pricing_quote_revenue_total", labels) == pytest.approx(revenue)
    assert metric_samples(metrics_port, "hanzo_pricing_quote_margin_total", labels) == pytest.approx(revenue - 3 * cost)


def test_demand_model_versions_retrained_shadowed_promoted_and_rolled_back(shop, demo_repo, server_process,
                                                                            tmp_path):
    """A folder of demand model versions: trained (production), retrained from the store's log
    (the candidate), the candidate answering only when named and getting shadow copies of
    the rest, then promoted and rolled back through the running server."""
    root, _, _ = shop
    world, folder = root / "world", tmp_path / "pricing"
    _cli("train", "pricing", "--events", str(world / "events.jsonl.gz"), "--catalog", str(world / "catalog.jsonl"),
         "--out", str(folder))
    retrained = json.loads(_cli("retrain", "pricing", "--data-dir", str(root / "data"), "--pricing-dir", str(folder),
                                "--catalog", str(world / "catalog.jsonl")).stdout)
    assert retrained["candidate_version"] == 2 and retrained["production_version"] == 1
    config = tmp_path / "hanzo.toml"
    config.write_text(f'[pricing]\nmodel = "{folder}"\n[shadow]\nshare = 1.0\ncpu_share = 1.0\n')
    server = server_process(demo_repo, "--config", str(config), "--data-dir", str(root / "data"))
    product_id = DemandModel.load(folder / "1" / "demand.npz").product_id[0]
    with grpc.insecure_channel(server.url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)

        def price(version: str = "") -> commerce_pb2.PriceResponse:
            return stub.QuotePrice(commerce_pb2.PriceRequest(product_id=product_id, request_id="p",
                                                             model_version=version), timeout=5)

        assert price().model_version == "1" and price("2").model_version == "2"
        for version, code in (("9", grpc.StatusCode.NOT_FOUND), ("two", grpc.StatusCode.INVALID_ARGUMENT)):
            with pytest.raises(grpc.RpcError) as info:
                price(version)
            assert info.value.code() == code, info.value.details()
        shadow_log = root / "data" / "shadow" / "pricing.jsonl"
        for _ in range(5):
            price()
        lines = until(lambda: shadow_log.read_text().splitlines() if shadow_log.exists() else [],
                      lambda got: len(got) >= 3, "the candidate's shadow quotes")
        line = json.loads(lines[-1])
        assert line["primary_version"] == 1 and line["candidate_version"] == 2 and line["candidate"]["price"] > 0

        status = json.loads(_cli("models", "status", "pricing", "--url", server.url).stdout)["models"][0]
        assert (status["production_version"], status["candidate_version"]) == ("1", "2")  # int64: JSON strings
        _cli("models", "promote", "pricing", "--url", server.url)
        assert price().model_version == "2"  # the switch is immediate: no reload to wait for
        _cli("models", "rollback", "pricing", "--url", server.url)
        assert price().model_version == "1"
    assert read_pointer(folder).history == (1,) and read_pointer(folder).action == "rollback"
