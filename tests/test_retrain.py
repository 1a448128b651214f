"""`hanzo retrain`: a candidate trained on the feature store's event log, written beside
production, which does not change; a server then loads it as the candidate."""
import json
import shutil
import subprocess
import sys
import time
import urllib.request

import grpc
import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")

from helpers import opened_store, simulated_world, until  # noqa: E402

from hanzo.loadtest.targets import free_port  # noqa: E402

from hanzo.server.features.events import record_to_proto  # noqa: E402
from hanzo.server.features.formats import read_records  # noqa: E402
from hanzo.server.features.log_export import export_events  # noqa: E402
from hanzo.server.models import ModelRepository  # noqa: E402
from hanzo.server.models.production import read_pointer  # noqa: E402
from hanzo.training.recommend.train import train  # noqa: E402
from hanzo.training.recommend.two_tower import TrainingConfig  # noqa: E402
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small marketplace: its first 14 days trained into version 1, all 20 in the store."""
    root = tmp_path_factory.mktemp("retrain")
    world, events = simulated_world(root / "world", days=20, seed=11, users=300, products=100)
    events.sort(key=lambda r: r["timestamp"])
    svc = opened_store(root / "data", catalog=world / "catalog.jsonl", fsync="never")
    try:
        for first in range(0, len(events), 5000):
            svc.ingest_blocking(events[first:first + 5000])
    finally:
        svc.close()
    early = root / "early.jsonl"
    cut = events[0]["timestamp"] + 14 * 86_400_000
    from hanzo.server.features.formats import write_records

    write_records(early, [r for r in events if r["timestamp"] < cut])
    train(early, root / "repo", world / "catalog.jsonl", config=TrainingConfig(epochs=1, seed=0), log=lambda m: None)
    return root, world, events


def test_the_log_exports_every_event_in_time_order(store, tmp_path):
    root, _, events = store
    out = tmp_path / "events.jsonl.gz"
    assert export_events([root / "data"], out) == len(events)
    exported = read_records(out)
    assert [r["event_id"] for r in exported] == [r["event_id"] for r in events]


async def test_retrain_writes_a_candidate_and_production_stays(store):
    root, world, events = store
    repo = root / "repo"
    assert read_pointer(repo / "recommend").version == 1  # the first version is production
    out = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "retrain", "recommend", "--data-dir",
                          str(root / "data"), "--model-repo", str(repo), "--catalog", str(world / "catalog.jsonl"),
                          "--epochs", "1"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout)
    assert (said["events"], said["candidate_version"], said["production_version"]) == (len(events), 2, 1)
    assert read_pointer(repo / "recommend").version == 1
    report = json.loads((repo / "recommend" / "2" / "report.json").read_text())
    assert report  # the training's own held-out figures travel with the version
    from hanzo.server.surfaces.recommend import RecommendArtifacts

    repository = ModelRepository(repo, _options(RecommendArtifacts))
    await repository.load_all()
    try:
        assert repository.get("recommend").version == 1 and repository.candidate("recommend").version == 2
    finally:
        await repository.close()

    bad = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "retrain", "search", "--data-dir",
                          str(root / "data"), "--model-repo", str(repo)], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "needs --catalog" in bad.stderr
    none = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "retrain", "fraud", "--data-dir",
                           str(root / "nowhere"), "--model-repo", str(repo)], capture_output=True, text=True,
                          timeout=60)
    assert none.returncode != 0 and "no event log" in none.stderr


def _options(artifacts):
    from hanzo.server.models import RepositoryOptions

    return RepositoryOptions(artifact_loaders={"recommend": artifacts.load})


def test_a_server_shadows_recommend_on_the_candidate(store, tmp_path, server_process):
    root, world, events = store
    data = tmp_path / "data"
    # every request copied and none given up: the calls come back to back, so copies wait for the end
    server = _serve_candidate(store, tmp_path, server_process, root / "repo",
                              "[shadow]\nshare = 1.0\ncpu_share = 1.0\nmax_in_flight = 64\nmax_wait_s = 120\n")
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    buyers = list(dict.fromkeys(r["user_id"] for r in reversed(events)
                                if r["event_type"] == "purchase" and r.get("user_id")))[:20]
    answers = {}
    for i, user in enumerate(buyers):
        answer = stub.Recommend(commerce_pb2.RecommendRequest(request_id=f"req-{i}", user_id=user, k=5), timeout=10)
        assert answer.model_version == "1"  # production answers; the candidate only shadows
        answers[f"req-{i}"] = [item.product_id for item in answer.items]
    path = data / "shadow" / "recommend.jsonl"
    deadline = time.monotonic() + 20
    while len(path.read_text().splitlines() if path.exists() else []) < len(buyers):
        assert time.monotonic() < deadline, "the shadow log did not fill"
        time.sleep(0.1)
    logged = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["request_id"] for r in logged} == set(answers)
    for line in logged:
        assert (line["primary_version"], line["candidate_version"]) == (1, 2)
        assert line["primary"] == answers[line["request_id"]] and len(line["candidate"]["items"]) == 5
    text = path.read_text()
    assert not any(user in text for user in buyers)  # request ids, never the shopper


def test_a_server_splits_shoppers_into_production_candidate_and_holdout(store, tmp_path, server_process):
    """[experiment]: each shopper stays in one arm; the candidate answers its arm, the holdout
    gets the non-personalised list, and every list shown is logged with its arm."""
    root, world, events = store
    data = tmp_path / "data"
    metrics_port = free_port()
    server = _serve_candidate(store, tmp_path, server_process, root / "repo",
                              "[experiment]\ncandidate_share = 0.3\nholdout_share = 0.2\nsalt = \"test\"\n",
                              "--metrics-port", str(metrics_port))
    users = list(dict.fromkeys(r["user_id"] for r in events if r.get("user_id")))[:200]
    arms: dict[str, str] = {}
    with grpc.insecure_channel(server.url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        held_out, first_items = set(), {}
        for i, user in enumerate(users + users[:20]):  # the first 20 asked twice
            answer = stub.Recommend(commerce_pb2.RecommendRequest(request_id=f"exp-{i}", user_id=user, k=5),
                                    timeout=10)
            assert arms.setdefault(user, answer.arm) == answer.arm  # the same shopper, the same arm
            expected_version = {"production": "1", "holdout": "1", "candidate": "2"}[answer.arm]
            assert answer.model_version == expected_version, (answer.arm, answer.model_version)
            first_items[i] = answer.items[0].product_id
            if answer.arm == "holdout":
                held_out.add(tuple(item.product_id for item in answer.items))
        # the first 10 shoppers click their list's first product, and buy it (on the store's clock,
        # the simulated days', as the lists were logged)
        now = max(r["timestamp"] for r in events) + 1000
        batch = commerce_pb2.EventBatch(request_id="outcomes")
        for i, user in enumerate(users[:10]):
            for kind, payload in (("recommendation_clicked", {"product_id": first_items[i], "request_id": f"exp-{i}"}),
                                  ("purchase", {"product_id": first_items[i], "price": 3.0, "quantity": 1.0})):
                record_to_proto({"event_id": f"{kind}-{i}", "event_type": kind, "timestamp": now, "user_id": user,
                                 "session_id": f"s-{i}", "payload": payload}, batch.events.add())
        assert not stub.IngestEvents(batch, timeout=10).rejects
    clicks = until(lambda: _experiment_counts(metrics_port, "clicks"), lambda got: sum(got.values()) >= 10,
                   "the clicks joined")
    expected: dict[str, int] = {}
    for user in users[:10]:
        key = f"recommend:{ {'candidate': '2'}.get(arms[user], '1') }/{arms[user]}"
        expected[key] = expected.get(key, 0) + 1
    assert clicks == expected and _experiment_counts(metrics_port, "purchases") == expected
    until(lambda: sum(_experiment_counts(metrics_port, "lists").values()), lambda n: n == len(users) + 20,
          "every list shown counted (the served log writes them in batches)")
    shares = {arm: list(arms.values()).count(arm) / len(arms) for arm in ("production", "candidate", "holdout")}
    assert abs(shares["candidate"] - 0.3) < 0.1 and abs(shares["holdout"] - 0.2) < 0.1, shares
    assert len(held_out) == 1  # the holdout's list is the same for everyone: nothing of the shopper read
    server.terminate()
    shown = [r for r in read_records(_exported(data, tmp_path)) if r["event_type"] == "recommendation_shown"
             and r["payload"]["request_id"].startswith("exp-")]
    assert len(shown) == len(users) + 20
    for record in shown:
        assert record["payload"]["arm"] == arms[record["user_id"]]


def _serve_candidate(store, tmp_path, server_process, repo, config_text: str, *extra: str):
    """A server on a copy of the store, over `repo` with recommend version 1 in production and
    2 its candidate, configured by `config_text`."""
    root, world, _ = store
    if not (repo / "recommend" / "2").is_dir():  # run alone: the candidate the retrain test makes
        train(root / "early.jsonl", repo, world / "catalog.jsonl", config=TrainingConfig(epochs=1, seed=1),
              log=lambda m: None)
    config = tmp_path / "server.toml"
    config.write_text(config_text)
    shutil.copytree(root / "data", tmp_path / "data")
    return server_process(repo, "--no-demo-models", "--data-dir", str(tmp_path / "data"), "--catalog",
                          str(world / "catalog.jsonl"), "--config", str(config), *extra)


def _experiment_counts(port: int, name: str) -> dict[str, int]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {f"{s.labels['model_version']}/{s.labels['arm']}": int(s.value)
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == f"hanzo_experiment_{name}_total" and s.value}


def _exported(data, tmp_path):
    out = tmp_path / "exported.jsonl.gz"
    export_events([data], out)
    return out


def test_the_gate_promotes_a_better_candidate_and_rolls_back_one_that_degrades(store, tmp_path, server_process):
    """[experiment] gate = true on a real server: the candidate's arm clicked far more than
    production's is promoted by the gate; watched against the version it replaced, which then
    does far better, it is rolled back and stopped."""
    root, world, events = store
    repo = tmp_path / "repo"
    shutil.copytree(root / "repo", repo)
    for extra in (p for p in (repo / "recommend").iterdir() if p.name.isdigit() and int(p.name) > 2):
        shutil.rmtree(extra)
    server = _serve_candidate(store, tmp_path, server_process, repo,
                              "[experiment]\ncandidate_share = 0.5\nsalt = \"gate-test\"\ngate = true\n"
                              "gate_every_s = 0.2\nmin_shoppers = 20\n"
                              "latency_ratio = 100.0\n"  # the latency guard: tests/test_experiments_outcomes.py
                              "tau_relative = 1.0\n")  # the differences here are large: the test expects large ones
    users = list(dict.fromkeys(r["user_id"] for r in events if r.get("user_id")))[:160]
    clock = [max(r["timestamp"] for r in events)]

    def round_of_lists(stub, tag: str, click_share: dict[str, float]) -> dict[str, str]:
        """Every shopper asks once; a share of each arm's lists is clicked (by shopper, seeded)."""
        rng = np.random.default_rng(len(tag))
        batch, versions = commerce_pb2.EventBatch(request_id=f"clicks-{tag}"), {}
        for i, user in enumerate(users):
            answer = stub.Recommend(commerce_pb2.RecommendRequest(request_id=f"{tag}-{i}", user_id=user, k=5),
                                    timeout=10)
            versions[answer.arm] = answer.model_version
            if rng.random() < click_share[answer.arm]:
                clock[0] += 1000
                record_to_proto({"event_id": f"click-{tag}-{i}", "event_type": "recommendation_clicked",
                                 "timestamp": clock[0], "user_id": user, "session_id": f"s-{tag}-{i}",
                                 "payload": {"product_id": answer.items[0].product_id, "request_id": f"{tag}-{i}"}},
                                batch.events.add())
        time.sleep(0.5)  # the lists' shown events reach the store before their clicks
        assert not batch.events or not stub.IngestEvents(batch, timeout=10).rejects
        return versions

    def gate(stub) -> dict:
        from hanzo.v1 import admin_pb2, admin_pb2_grpc

        report = admin_pb2_grpc.AdminStub(stub._channel).ModelVersions(
            admin_pb2.ModelVersionsRequest(model_name="recommend"), timeout=10)
        return json.loads(report.models[0].gate_json)

    with grpc.insecure_channel(server.url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        stub._channel = channel
        assert round_of_lists(stub, "a", {"production": 0.3, "candidate": 0.8}) == {"production": "1",
                                                                                     "candidate": "2"}
        promoted = until(lambda: gate(stub), lambda g: g["actions"], "the gate's promotion", server)
        assert promoted["actions"][0]["action"] == "promote" and promoted["actions"][0]["version"] == 2
        assert promoted["watching"] == [2, 1]
        # watched: the new production (2) against the version it replaced (1), which now does better
        assert round_of_lists(stub, "b", {"production": 0.3, "previous": 0.8}) == {"production": "2",
                                                                                   "previous": "1"}
        rolled = until(lambda: gate(stub), lambda g: len(g["actions"]) == 2, "the gate's rollback")
        assert rolled["actions"][1]["action"] == "rollback" and rolled["stopped"].keys() == {"2"}
        assert round_of_lists(stub, "c", {"production": 0.0}) == {"production": "1"}  # 2 is stopped: no arm
    pointer = read_pointer(repo / "recommend")
    assert pointer.version == 1 and pointer.action == "rollback" and pointer.by == "gate"
