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
import numpy as np
import pytest
from helpers import shared_data
from test_customers import CDNOW

from hanzo.server.features.events import record_from_json, record_to_proto
from hanzo.v1 import admin_pb2, admin_pb2_grpc, commerce_pb2, commerce_pb2_grpc


def _batches(merchant: str, size: int = 5_000):
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
    data = tmp_path / "data"
    server = server_process(demo_repo, "--config", str(tmp_path / "hanzo.toml"), "--data-dir", str(data))
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
                (commerce_pb2.CustomersRequest(merchant_id="shop a", user_ids=["a"], horizon_days=30), "merchant_id")):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ScoreCustomers(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in refused.value.details()


def test_the_email_batch_reaches_lapsed_shoppers_with_their_churn_outlook(tmp_path, served):
    from helpers import simulated_world

    pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    from hanzo.training.recommend.train import train
    from hanzo.training.recommend.two_tower import TrainingConfig

    world, events = simulated_world(tmp_path / "world", days=45, seed=5, users=400, products=120)
    train(world / "events.jsonl.gz", tmp_path / "model_repo", world / "catalog.jsonl",
          config=TrainingConfig(epochs=2, batch=256), log=lambda m: None)
    last_day = str(np.datetime64(max(e["timestamp"] for e in events), "ms").astype("datetime64[D]"))
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "score-customers", "--events",
                          str(world / "events.jsonl.gz"), "--as-of", last_day, "--horizon-days", "30",
                          "--out", str(tmp_path / "scores.csv"), "--save-model", str(tmp_path / "cm")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    (tmp_path / "hanzo.toml").write_text(f'[customers]\nmodel = "{tmp_path / "cm"}"\n')
    server = served(world, "--config", str(tmp_path / "hanzo.toml"))
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    for start in range(0, len(events), 2000):
        batch = commerce_pb2.EventBatch()
        for record in events[start:start + 2000]:
            record_to_proto(record, batch.events.add())
        assert not stub.IngestEvents(batch, timeout=30).rejects
    out = tmp_path / "email.jsonl"
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "recommend-batch", "--url", server.url,
                          "--data-dir", str(tmp_path / "data"), "--out", str(out), "--k", "5", "--active-days", "7",
                          "--churn-horizon-days", "30"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = {r["user_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    lapsed = [r for r in rows.values() if r["lapsed"]]
    buyers = {e["user_id"] for e in events if e["event_type"] == "purchase" and e.get("user_id")}
    last_seen = {}
    for e in events:
        if e.get("user_id"):
            last_seen[e["user_id"]] = max(last_seen.get(e["user_id"], 0), e["timestamp"])
    newest = max(last_seen.values())
    gone = {u for u in buyers if last_seen[u] <= newest - 7 * 86_400_000}
    assert gone and {r["user_id"] for r in lapsed} == gone  # every lapsed buyer, and only they
    assert all(len(r["items"]) == 5 and not r["fallback"] for r in lapsed)
    nightly = {row["user_id"]: row for row in csv.DictReader(open(tmp_path / "scores.csv"))}
    for user in buyers:
        assert rows[user]["churn"]["risk_band"] == nightly[user]["risk_band"]
    # a second night's audience is the same: last night's own recommendations are no visit
    again = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "recommend-batch", "--url", server.url,
                            "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "again.jsonl"), "--k", "5",
                            "--active-days", "7", "--audience", "lapsed", "--churn-horizon-days", "0"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert {json.loads(line)["user_id"] for line in (tmp_path / "again.jsonl").read_text().splitlines()} == gone
    # the lapsed are the likelier to leave
    p = lambda group: np.mean([r["churn"]["p_buy_again"] for r in group])  # noqa: E731
    assert p(lapsed) < p([rows[u] for u in buyers - gone])


def test_score_customers_without_a_model_says_how_to_make_one(demo_repo, server_process):
    server = server_process(demo_repo)
    with grpc.insecure_channel(server.url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ScoreCustomers(commerce_pb2.CustomersRequest(user_ids=["a"], horizon_days=30), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "hanzo score-customers --save-model" in refused.value.details()
