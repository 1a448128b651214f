"""Recommend through a real server: a model trained on a simulated marketplace, a new user's
history ingested over gRPC, recommendations that reflect it, stock and exclusions honoured,
bad requests refused by field."""
import time
from collections import Counter

import grpc
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")

from helpers import ServerProcess, drift_inputs  # noqa: E402

from hanzo.loadtest.targets import free_port  # noqa: E402
from hanzo.server.experiments.drift import REFERENCE_FILE, Reference  # noqa: E402
from hanzo.server.features.events import record_to_proto  # noqa: E402
from hanzo.server.surfaces.recommend_inputs import DRIFT_INPUTS  # noqa: E402
from hanzo.server.features.offline import load_log_records  # noqa: E402
from hanzo.training.recommend.train import train  # noqa: E402
from hanzo.training.recommend.two_tower import TrainingConfig  # noqa: E402
from hanzo.training.simulator import SimulationConfig, simulate  # noqa: E402
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("recommend")
    sim = simulate(SimulationConfig(seed=12, users=600, products=150, days=20), root / "world")
    train(root / "world" / "events.jsonl.gz", root / "model_repo", root / "world" / "catalog.jsonl",
          config=TrainingConfig(epochs=3, batch=256), log=lambda m: None)
    server = ServerProcess(root / "model_repo", "--no-demo-models", "--data-dir", str(root / "data"), "--catalog",
                           str(root / "world" / "catalog.jsonl"), "--metrics-port", str(free_port())).wait_ready()
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    end = sim.start_ms + 20 * 86_400_000
    events = [e for e in sim.events if e["timestamp"] < end]
    for start in range(0, len(events), 1000):
        batch = commerce_pb2.EventBatch()
        for record in events[start:start + 1000]:
            record_to_proto(record, batch.events.add())
        stub.IngestEvents(batch, timeout=30)
    yield server, stub, sim, end, root
    assert server.terminate() == 0


def ingest(stub, records):
    batch = commerce_pb2.EventBatch()
    for record in records:
        record_to_proto(record, batch.events.add())
    ack = stub.IngestEvents(batch, timeout=30)
    assert not ack.rejects, ack.rejects


def test_a_new_users_history_shapes_the_recommendations(served):
    server, stub, sim, end, root = served
    catalog = sim.catalog
    root = "Electronics"
    liked = [catalog.ids[i] for i in range(len(catalog)) if catalog.categories[i][0] == root][:8]
    history = []
    for n, product in enumerate(liked):
        kind = "purchase" if n % 2 else "product_view"
        payload = {"product_id": product, "price": 10.0, "quantity": 1.0} if kind == "purchase" else {
            "product_id": product}
        history.append({"event_id": f"new-{n}", "event_type": kind, "timestamp": end + n * 60_000,
                        "user_id": "brand-new", "session_id": "new-session", "payload": payload, "context": {}})
    ingest(stub, history)
    response = stub.Recommend(commerce_pb2.RecommendRequest(user_id="brand-new", k=10, request_id="r-1"), timeout=10)
    assert len(response.items) == 10 and not response.fallback and response.model_version == "1"
    assert len({i.product_id for i in response.items}) == 10
    roots = Counter(catalog.categories[catalog.ids.index(i.product_id)][0] for i in response.items)
    share = sum(1 for c in catalog.categories if c[0] == root) / len(catalog)
    # The history's category leads (as far as the 50% diversity cap allows), far above its share.
    assert roots[root] >= 4 and roots[root] / 10 > 2 * share, roots
    assert max(roots.values()) <= 5
    assert {i.source for i in response.items} <= {"two_tower", "repeat", "co_visitation", "popularity", "exploration"}

    # Out of stock everywhere, or excluded: never shown.
    gone = response.items[0].product_id
    ingest(stub, [{"event_id": f"stock-{loc}", "event_type": "stock_update", "timestamp": end + 3_600_000,
                   "user_id": None, "session_id": "", "payload": {"product_id": gone, "location": loc,
                                                                  "quantity": 0.0}, "context": {}}
                  for loc in ("wh-east", "wh-west", "")])
    excluded = [i.product_id for i in response.items[1:4]]
    again = stub.Recommend(commerce_pb2.RecommendRequest(user_id="brand-new", k=10, exclude_product_ids=excluded),
                           timeout=10)
    shown = {i.product_id for i in again.items}
    assert gone not in shown and not shown & set(excluded) and len(again.items) == 10


def test_cold_start_falls_back_to_popularity_and_is_logged(served):
    server, stub, sim, end, root = served
    response = stub.Recommend(commerce_pb2.RecommendRequest(user_id="nobody-at-all", k=5, request_id="cold-1"),
                              timeout=10)
    assert response.fallback and "cold start" in response.fallback_reason and len(response.items) == 5
    assert all(i.source == "popularity" for i in response.items)
    # The list served is in the event log, joined to its request and model version.
    for _ in range(200):  # the log flushes every 50 ms; a loaded machine may take longer
        shown = [r for r in load_log_records(root / "data") if r["event_id"] == "shown-cold-1"]
        if shown:
            break
        time.sleep(0.05)
    assert shown and shown[0]["event_type"] == "recommendation_shown"
    assert shown[0]["payload"]["product_ids"] == [i.product_id for i in response.items]
    assert shown[0]["payload"]["model_version"] == "recommend:1"


@pytest.mark.parametrize("request_fields, field", [
    ({"user_id": "u1", "k": -1}, "k"),
    ({"user_id": "u1", "k": 101}, "k"),
    ({"user_id": "u1", "k": 5, "placement": 99}, "placement"),
    ({"k": 5}, "user_id"),
])
def test_bad_requests_name_the_field(served, request_fields, field):
    server, stub, sim, end, root = served
    with pytest.raises(grpc.RpcError) as info:
        stub.Recommend(commerce_pb2.RecommendRequest(**request_fields), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field)


def test_k_left_out_asks_for_ten(served):
    _, stub, sim, _, _ = served
    user = next(e["user_id"] for e in sim.events if e["event_type"] == "purchase" and e.get("user_id"))
    assert len(stub.Recommend(commerce_pb2.RecommendRequest(user_id=user), timeout=10).items) == 10


def test_email_batch_writes_every_active_user(served, tmp_path):
    import json
    import subprocess
    import sys

    server, stub, sim, end, root = served
    out = tmp_path / "email.jsonl"
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "recommend-batch", "--url", server.url,
                          "--data-dir", str(root / "data"), "--out", str(out), "--k", "5", "--active-days", "3",
                          "--audience", "active", "--churn-horizon-days", "0"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    from hanzo.server.commands.recommend_batch import active_users

    assert [r["user_id"] for r in sorted(rows, key=lambda r: r["user_id"])] == active_users(root / "data", 3)
    assert rows and all(len(r["items"]) == 5 for r in rows)


def test_the_shoppers_a_version_ranks_for_are_measured_against_its_training_reference(served):
    """Drift: the version ships the inputs and scores training saw; each list the model ranks
    is one row of its window, and every input and the score get a PSI and a KS."""
    server, stub, sim, _, root = served
    reference = Reference.load(root / "model_repo" / "recommend" / "1" / REFERENCE_FILE)
    assert reference.names == (*DRIFT_INPUTS, "score")
    buyers = list(dict.fromkeys(e["user_id"] for e in sim.events if e["event_type"] == "purchase"
                                and e.get("user_id")))
    ranked = 0
    for user in buyers[:300]:
        answer = stub.Recommend(commerce_pb2.RecommendRequest(user_id=user, k=5), timeout=10)
        ranked += not answer.fallback
    assert ranked >= 100, ranked  # a window is measured from 100 rows on
    psi = drift_inputs(server.metrics_port, "hanzo_drift_psi", "recommend")
    ks = drift_inputs(server.metrics_port, "hanzo_drift_ks", "recommend")
    assert set(psi) == set(ks) == set(reference.names), psi
    assert all(value >= 0 for value in psi.values()) and all(0 <= value <= 1 for value in ks.values())
