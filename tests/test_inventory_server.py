"""PlanInventory through a real server: the nightly plan written by `hanzo plan-inventory`,
answered per product and location with the reorder point for the asked service level and lead
time, reloaded when the plan is rewritten, and bad requests refused by field."""
from __future__ import annotations

import csv
import subprocess
import sys

import grpc
import numpy as np
import pytest
from helpers import until
from test_forecast import _daily

from hanzo.server.inventory.plan import InventoryPlan
from hanzo.server.inventory.policy import reorder_point
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc


def _write_sales(path, scale: float = 1.0) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", "location", "sku", "units", "promo", "holiday", "open"])
        for location, seed in (("store1", 0), ("store2", 1)):
            series = _daily(200, seed)
            for d, u, p, h, o in zip(series.dates, series.units, series.promo, series.holiday, series.open):
                writer.writerow([str(d), location, "p1", f"{scale * u:.2f}", int(p), int(h), int(o)])


def _plan(tmp_path, sales, plan_path):
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "plan-inventory", "--sales", str(sales),
                          "--horizon", "28", "--lead-time", "5", "--out", str(tmp_path / "reorder.csv"),
                          "--plan", str(plan_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return list(csv.DictReader(open(tmp_path / "reorder.csv")))


def test_plan_inventory_over_grpc(tmp_path, demo_repo, server_process):
    sales, plan_path = tmp_path / "sales.csv", tmp_path / "plan.npz"
    _write_sales(sales)
    rows = _plan(tmp_path, sales, plan_path)
    assert {(r["location"], r["product_id"]) for r in rows} == {("store1", "p1"), ("store2", "p1"), ("ALL", "p1")}
    plan = InventoryPlan.load(plan_path)
    # ALL is the stores added up: their forecasts summed, their spreads combined as independent
    stores = [plan.row("p1", s) for s in ("store1", "store2")]
    np.testing.assert_allclose(plan.mean[plan.row("p1", "ALL")], plan.mean[stores].sum(axis=0))
    width = lambda r: plan.high[r] - plan.low[r]  # noqa: E731
    both = width(stores[0]) + width(stores[1])
    sells = both > 0  # the steps the stores are open (closed steps, inferred from the history, sell nothing)
    assert sells.any() and (width(plan.row("p1", "ALL"))[sells] < both[sells]).all()
    (tmp_path / "hanzo.toml").write_text(f'[inventory]\nplan = "{plan_path}"\n')
    server = server_process(demo_repo, "--config", str(tmp_path / "hanzo.toml"))
    with grpc.insecure_channel(server.url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        answer = stub.PlanInventory(commerce_pb2.InventoryRequest(
            product_id="p1", location="store1", horizon_days=14, service_level=0.9, lead_time_days=5,
            request_id="i1"), timeout=5)
        row = plan.row("p1", "store1")
        expected = reorder_point(plan.mean[row], plan.low[row], plan.high[row], 5, 0.9)
        assert len(answer.forecast) == 14 and answer.request_id == "i1" and answer.model_version == plan.version
        np.testing.assert_allclose(answer.forecast, plan.mean[row, :14])
        assert all(lo <= f <= hi for lo, f, hi in zip(answer.forecast_low, answer.forecast, answer.forecast_high))
        assert answer.reorder_point == pytest.approx(expected.reorder_point)
        assert answer.safety_stock == pytest.approx(expected.safety_stock) and answer.safety_stock > 0
        # a higher service level holds more safety stock
        more = stub.PlanInventory(commerce_pb2.InventoryRequest(product_id="p1", location="store1",
                                                                service_level=0.99, lead_time_days=5), timeout=5)
        assert more.safety_stock > answer.safety_stock
        # tonight's plan replaces yesterday's without a restart
        _write_sales(sales, scale=2.0)
        _plan(tmp_path, sales, plan_path)
        ask = commerce_pb2.InventoryRequest(product_id="p1", location="store1", horizon_days=14, lead_time_days=5)
        # the server looks at the file at most once a second: asked until the new plan answers
        doubled = until(lambda: stub.PlanInventory(ask, timeout=5),
                        lambda a: sum(a.forecast) > 1.5 * sum(answer.forecast), "tonight's plan")
        assert sum(doubled.forecast) == pytest.approx(2 * sum(answer.forecast), rel=0.05)
        for request, code, field in (
                (commerce_pb2.InventoryRequest(), grpc.StatusCode.INVALID_ARGUMENT, "product_id"),
                (commerce_pb2.InventoryRequest(product_id="p1", location="store1", service_level=1.2),
                 grpc.StatusCode.INVALID_ARGUMENT, "service_level"),
                (commerce_pb2.InventoryRequest(product_id="p1", location="store1", horizon_days=400),
                 grpc.StatusCode.INVALID_ARGUMENT, "horizon_days"),
                (commerce_pb2.InventoryRequest(product_id="p1", location="store9"), grpc.StatusCode.NOT_FOUND,
                 "no plan for product")):
            with pytest.raises(grpc.RpcError) as info:
                stub.PlanInventory(request, timeout=5)
            assert info.value.code() == code and info.value.details().startswith(field), info.value.details()
