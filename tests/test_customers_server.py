"""ScoreCustomers through a real server: the learned model the nightly `hanzo score-customers
--save-model` keeps, over the lifetime features the store built from the merchant's events,
answers as the nightly batch scored the same customers; another merchant's shoppers and an
erased one are unknown; bad requests are refused by field."""
from __future__ import annotations

import csv
import gzip
import json
import re
import subprocess
import sys

import grpc
import pytest
from helpers import shared_data
from test_customers import CDNOW

from hanzo.server.features.events import record_from_json
from hanzo.v1 import admin_pb2, admin_pb2_grpc, commerce_pb2, commerce_pb2_grpc


def _batches(merchant: str, size: int = 5_000):
    from hanzo.server.features.events import record_to_proto

    records = [record_from_json(json.loads(line)) for line in gzip.open(CDNOW)]
    records.sort(key=lambda r: r["timestamp"])
    for start in range(0, len(records), size):
        batch = commerce_pb2.EventBatch(merchant_id=merchant)
        for record in records[start:start + size]:
            record_to_proto(record, batch.events.add())
        yield batch


@shared_data("cdnow", "events.jsonl.gz")
def test_score_customers_over_grpc(tmp_path, demo_repo, server_process):
    model, scores = tmp_path / "customer-model", tmp_path / "scores.csv"
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "score-customers", "--events", str(CDNOW),
                          "--as-of", "1997-09-30", "--horizon-days", "273", "--out", str(scores),
                          "--save-model", str(model)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    nightly = {row["user_id"]: row for row in csv.DictReader(open(scores))}
    (tmp_path / "hanzo.toml").write_text(f'[customers]\nmodel = "{model}"\n')
    server = server_process(demo_repo, "--config", str(tmp_path / "hanzo.toml"))
    with grpc.insecure_channel(server.url) as channel:
        stub, admin = commerce_pb2_grpc.CommerceStub(channel), admin_pb2_grpc.AdminStub(channel)
        for batch in _batches("shop-a"):
            ack = stub.IngestEvents(batch, timeout=60)
            assert ack.accepted == len(batch.events), ack.rejects[:3]
        users = sorted(nightly)[:200:7]
        answer = stub.ScoreCustomers(commerce_pb2.CustomersRequest(
            merchant_id="shop-a", user_ids=users + ["never-bought"], horizon_days=273, request_id="c1"), timeout=10)
        assert answer.request_id == "c1" and answer.model_version == "1997-09-30"
        assert [c.user_id for c in answer.customers] == users + ["never-bought"]
        for outlook in answer.customers[:-1]:
            row = nightly[outlook.user_id]
            assert outlook.known and outlook.risk_band == row["risk_band"]
            assert outlook.p_buy_again == pytest.approx(float(row["p_buy_again"]), abs=1e-4)
            assert outlook.expected_purchases == pytest.approx(float(row["expected_purchases"]), abs=1e-4)
            assert outlook.expected_spend == pytest.approx(float(row["expected_spend"]), abs=0.01)
            # the same reasons; a figure may differ in its last digit (the store reads spend in float32)
            assert re.sub(r"[0-9.]+", "#", "; ".join(outlook.reasons)) == re.sub(r"[0-9.]+", "#", row["reasons"])
        unknown = answer.customers[-1]
        assert not unknown.known and unknown.p_buy_again == 0 and not unknown.reasons
        # another shop's customers of the same ids are not shop-a's
        other = stub.ScoreCustomers(commerce_pb2.CustomersRequest(merchant_id="shop-b", user_ids=users[:3],
                                                                  horizon_days=30), timeout=10)
        assert not any(c.known for c in other.customers)
        # an erased customer has no history left to score
        admin.Forget(admin_pb2.ForgetRequest(merchant_id="shop-a", user_id=users[0]), timeout=120)
        after = stub.ScoreCustomers(commerce_pb2.CustomersRequest(merchant_id="shop-a", user_ids=users[:2],
                                                                  horizon_days=273), timeout=10)
        assert [c.known for c in after.customers] == [False, True]
        for request, field in (
                (commerce_pb2.CustomersRequest(horizon_days=30), "user_ids"),
                (commerce_pb2.CustomersRequest(user_ids=["a"]), "horizon_days"),
                (commerce_pb2.CustomersRequest(user_ids=["a"], horizon_days=731), "horizon_days"),
                (commerce_pb2.CustomersRequest(user_ids=["a"] * 1001, horizon_days=30), "user_ids"),
                (commerce_pb2.CustomersRequest(user_ids=["a", ""], horizon_days=30), "user_ids[1]"),
                (commerce_pb2.CustomersRequest(user_ids=["shop-a|" + users[1]], horizon_days=30), "user_ids[0]"),
                (commerce_pb2.CustomersRequest(merchant_id="shop a", user_ids=["a"], horizon_days=30), "merchant_id")):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ScoreCustomers(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in refused.value.details()


def test_score_customers_without_a_model_says_how_to_make_one(demo_repo, server_process):
    server = server_process(demo_repo)
    with grpc.insecure_channel(server.url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ScoreCustomers(commerce_pb2.CustomersRequest(user_ids=["a"], horizon_days=30), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "hanzo score-customers --save-model" in refused.value.details()
