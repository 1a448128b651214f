"""A first `hanzo serve` on an empty repository, as a new user meets it: the port answers
NOT_SERVING at once; the demo world is built whole or not at all; every surface answers from the
first SERVING (Search from BM25 until a re-ranker that beats it is trained); the printed user has
recent history, on the first start and on a start days later; what to try comes last."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import HANG_GUARD_S, until

from hanzo.server.commands.demo_world import DemoPaths, commit, problems, recover, reset
from hanzo.server.commands.common import CommandError
from hanzo.server.features.rebase import rebase_history
from hanzo.server.features.service import FeatureStoreConfig
from hanzo.training.demo_models import build_demo_repository
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow

DAY_MS = 86_400_000
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def _health_until_serving(server, while_starting=lambda: None) -> list[int]:
    """Every distinct health status seen, from the first answer to SERVING; `while_starting`
    runs once, at the first NOT_SERVING."""
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.url))
    seen: list[int] = []
    end = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < end:
        assert server.proc.poll() is None, server.log()
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service="hanzo.v1.Commerce"), timeout=2).status
        except grpc.RpcError:
            time.sleep(0.05)  # the interpreter is still starting: nothing listens yet
            continue
        if not seen or seen[-1] != status:
            seen.append(status)
            if status == NOT_SERVING and len(seen) == 1:
                while_starting()
        if status == SERVING:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"no SERVING: {server.log()}")


def _user_features(stub, user: str) -> tuple[dict[str, float], int]:
    answer = stub.GetFeatures(commerce_pb2.FeaturesRequest(entity="user", entity_ids=[user]), timeout=5)
    return dict(zip(answer.columns, np.frombuffer(answer.values, np.float32).tolist())), answer.as_of.ToMilliseconds()


def test_first_start_serves_the_demo_then_a_restart_days_later_finds_it_current(tmp_path, server_process):
    repo = tmp_path / "model_repo"
    server = server_process(repo, "--data-dir", str(tmp_path / "hanzo_data"), wait=False)
    refused = []

    def ask_too_early():
        stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
        with pytest.raises(grpc.RpcError) as info:
            stub.Search(commerce_pb2.SearchRequest(query="keyboard"), timeout=5)
        refused.append(info.value.code())

    statuses = _health_until_serving(server, ask_too_early)
    assert statuses[0] == NOT_SERVING and statuses[-1] == SERVING  # the port answered during the build
    assert refused == [grpc.StatusCode.UNAVAILABLE]  # and refused every call until SERVING
    paths = DemoPaths.of_paths(repo, tmp_path / "hanzo_data")
    demo = paths.manifest()
    assert not paths.staging.exists()

    # stdout is for people: what to try, last; stderr is the log, one JSON object a line
    out = server.out().splitlines()
    assert out[0].startswith("hanzo: SERVING on ") and any(demo["user_id"] in line for line in out)
    assert all(json.loads(line) for line in server.log().splitlines())

    channel = grpc.insecure_channel(server.url)
    commerce = commerce_pb2_grpc.CommerceStub(channel)
    features, as_of = _user_features(commerce, demo["user_id"])
    assert features["user_purchase_count_7d"] > 0 and features["user_order_count_30d"] > 0
    assert abs(as_of - time.time() * 1000) < DAY_MS  # the history ends now, not when it was simulated
    found = commerce.Search(commerce_pb2.SearchRequest(query=demo["query"]), timeout=5)
    assert len(found.items) == 10 and found.items[0].source == "bm25"  # k defaults to 10
    shown = commerce.Recommend(commerce_pb2.RecommendRequest(user_id=demo["user_id"], k=5), timeout=5)
    assert len(shown.items) == 5 and not shown.fallback
    plan = commerce.PlanInventory(commerce_pb2.InventoryRequest(product_id=demo["product_id"],
                                                                location=demo["location"]), timeout=5)
    assert plan.reorder_point > 0 and len(plan.forecast) > 0
    everywhere = commerce.PlanInventory(commerce_pb2.InventoryRequest(product_id=demo["product_id"]), timeout=5)
    assert sum(everywhere.forecast) >= sum(plan.forecast)  # no location: all warehouses together
    assert commerce.QuotePrice(commerce_pb2.PriceRequest(product_id=demo["product_id"]), timeout=5).price > 0
    scored = commerce.ScoreFraud(json_format.ParseDict({"order": demo["order"]}, commerce_pb2.FraudRequest()),
                                 timeout=5)
    assert scored.model_version == "1" and all("not given" not in r.text for r in scored.reasons)

    # what the printed lines suggest, as a user types it
    called = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "call", "--url", server.url,
                             "GetFeatures", json.dumps({"entity": "user", "entity_ids": [demo["user_id"]]})],
                            capture_output=True, text=True, timeout=120)
    assert json.loads(called.stdout)["features"][demo["user_id"]]["user_purchase_count_7d"] > 0, called.stderr

    # the re-ranker, trained beside the serving server, answers only if it beat BM25
    until(lambda: paths.manifest()["search"]["state"], lambda state: state != "pending", "the re-ranker's training",
          server)
    search = paths.manifest()["search"]
    assert (search["state"] == "reranker") == (search["validation_ndcg10"] > search["validation_bm25_ndcg10"])
    found = commerce.Search(commerce_pb2.SearchRequest(query=demo["query"], k=3), timeout=5)
    assert found.items[0].source == ("reranker" if search["state"] == "reranker" else "bm25")
    assert server.terminate() == 0

    # five days pass: the history is as if built five days ago, and the next start moves it to now
    rebase_history(FeatureStoreConfig(data_dir=tmp_path / "hanzo_data", catalog=paths.world / "catalog.jsonl"),
                   -5 * DAY_MS)
    again = server_process(repo, "--data-dir", str(tmp_path / "hanzo_data"))
    assert "moving the demo's history forward" in again.log()
    commerce = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(again.url))
    later, as_of = _user_features(commerce, demo["user_id"])
    assert abs(as_of - time.time() * 1000) < DAY_MS
    assert later["user_purchase_count_7d"] == features["user_purchase_count_7d"]


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def test_a_first_start_killed_mid_build_leaves_nothing_and_the_next_builds_whole(tmp_path, server_process):
    repo = tmp_path / "model_repo"
    server = server_process(repo, "--data-dir", str(tmp_path / "hanzo_data"), wait=False)
    staging = tmp_path / ".hanzo-first-start"
    until(lambda: (staging / "demo_world" / "catalog.jsonl").exists(), bool, "the build to start", server)
    builders = _children_of(server.proc.pid)
    assert builders
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    end = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() for pid in builders):  # the build dies with its server
        assert time.monotonic() < end, "the build outlived its server"
        time.sleep(0.05)
    assert not (repo.exists() and any(repo.iterdir()))  # nothing half-built where a start would look
    assert not (tmp_path / "hanzo_data").exists() and not (tmp_path / "demo_world").exists()

    again = server_process(repo, "--data-dir", str(tmp_path / "hanzo_data"))
    assert "removing an unfinished demo build" in again.log()
    assert not staging.exists() and problems(DemoPaths.of_paths(repo, tmp_path / "hanzo_data")) == []
    assert {"recommend", "fraud", "demo_risk_mlp"} <= {p.name for p in repo.iterdir()}


def test_a_committed_build_cut_short_is_finished_by_the_next_start(tmp_path):
    paths = DemoPaths.of_paths(tmp_path / "model_repo", tmp_path / "hanzo_data")
    build = paths.staging / "model_repo"
    build_demo_repository(build)
    (paths.staging / "demo_world").mkdir()
    (paths.staging / "demo_world" / "demo.json").write_text("{}")
    moves = [(paths.staging / "demo_world", paths.world)] + [(build / n, paths.model_repo / n)
                                                            for n in ("demo_risk_mlp", "demo_user_tower")]
    paths.model_repo.mkdir()
    (paths.model_repo / "README.md").write_text("kept")
    (paths.model_repo / "demo_user_tower").mkdir()  # someone's own, made while the demo was building
    (paths.model_repo / "demo_user_tower" / "mine").write_text("theirs")
    commit(paths.staging, moves)
    assert not paths.staging.exists() and (paths.model_repo / "demo_risk_mlp" / "config.pbtxt").exists()
    assert sorted(p.name for p in (paths.model_repo / "demo_user_tower").iterdir()) == ["mine"]  # kept, not mixed
    assert (paths.model_repo / "README.md").read_text() == "kept" and (paths.world / "demo.json").exists()

    # a crash after the journal and the first move: the next start makes the others
    other = DemoPaths.of_paths(tmp_path / "b" / "model_repo", tmp_path / "b" / "hanzo_data")
    build_demo_repository(other.staging / "model_repo")
    names = ("demo_risk_mlp", "demo_user_tower")
    journal = [[str(other.staging / "model_repo" / n), str(other.model_repo / n)] for n in names]
    (other.staging / "COMMIT").write_text(json.dumps(journal))
    other.model_repo.mkdir(parents=True)
    os.rename(other.staging / "model_repo" / names[0], other.model_repo / names[0])
    recover(other)
    assert sorted(p.name for p in other.model_repo.iterdir()) == list(names) and not other.staging.exists()

    # a build that never reached its journal is removed, never moved in
    third = DemoPaths.of_paths(tmp_path / "c" / "model_repo", tmp_path / "c" / "hanzo_data")
    build_demo_repository(third.staging / "model_repo")
    recover(third)
    assert not third.staging.exists() and not third.model_repo.exists()


def test_a_partial_demo_is_named_with_how_to_reset(tmp_path, server_process):
    repo = tmp_path / "model_repo"
    build_demo_repository(repo)  # what an interrupted first start of an earlier Hanzo left
    server = server_process(repo)
    warnings = [json.loads(line) for line in server.log().splitlines() if '"warning"' in line]
    assert any("--reset-demo" in w["msg"] and "not the demo marketplace" in w["msg"] for w in warnings), warnings


def test_reset_removes_only_what_a_demo_built(tmp_path):
    paths = DemoPaths.of_paths(tmp_path / "model_repo", tmp_path / "hanzo_data")
    build_demo_repository(paths.model_repo)
    (paths.model_repo / "my_model" / "1").mkdir(parents=True)
    with pytest.raises(CommandError, match="my_model"):
        reset(paths)
    assert (paths.model_repo / "demo_risk_mlp").exists()
    (paths.model_repo / "my_model" / "1").rmdir()
    (paths.model_repo / "my_model").rmdir()
    paths.data_dir.mkdir()
    (paths.data_dir / "log").mkdir()  # a shop's own events: no demo marker
    (paths.data_dir / "log" / "00000000000000000000.log").write_bytes(b"events")
    with pytest.raises(CommandError, match="not the demo's"):
        reset(paths)
    (paths.data_dir / "demo-history.json").write_text("{}")
    removed = reset(paths)
    assert paths.data_dir in removed and not paths.data_dir.exists() and not any(paths.model_repo.iterdir())


def test_a_reset_cut_short_is_finished_by_the_next_start(tmp_path):
    paths = DemoPaths.of_paths(tmp_path / "model_repo", tmp_path / "hanzo_data")
    build_demo_repository(paths.model_repo)
    paths.world.mkdir()
    (paths.world / "demo.json").write_text("{}")
    paths.data_dir.mkdir()
    (paths.data_dir / "demo-history.json").write_text("{}")
    # what --reset-demo journals before it removes anything, then a crash after its first removal
    listed = [paths.data_dir, paths.world, paths.model_repo / "demo_risk_mlp", paths.model_repo / "demo_user_tower"]
    paths.reset_journal.write_text(json.dumps([str(p) for p in listed]))
    import shutil
    shutil.rmtree(paths.data_dir)
    recover(paths)
    assert not any(p.exists() for p in listed) and not paths.reset_journal.exists()


def test_a_half_removed_demo_world_is_replaced_not_kept(tmp_path):
    paths = DemoPaths.of_paths(tmp_path / "model_repo", tmp_path / "hanzo_data")
    paths.world.mkdir()
    (paths.world / "catalog.jsonl").write_text("")  # what a removal cut short left: no demo.json
    (paths.staging / "demo_world").mkdir(parents=True)
    (paths.staging / "demo_world" / "demo.json").write_text('{"user_id": "u1"}')
    commit(paths.staging, [(paths.staging / "demo_world", paths.world)])
    assert paths.manifest() == {"user_id": "u1"} and not (paths.world / "catalog.jsonl").exists()


def test_a_shops_own_data_gets_the_demo_models_and_no_false_alarm(tmp_path, server_process):
    from hanzo.server.features.service import FeatureService

    data = tmp_path / "shop_data"
    service = FeatureService(FeatureStoreConfig(data_dir=data))
    service.open()
    service.ingest_blocking([{"event_id": "e1", "event_type": "page_view", "timestamp": int(time.time() * 1000),
                              "user_id": "shopper-1", "session_id": "s1", "payload": {}}])
    service.close()
    server = server_process(tmp_path / "model_repo", "--data-dir", str(data))
    assert "no demo marketplace: the data directory holds events already" in server.log()
    assert "--reset-demo" not in server.log() and not (data / "demo-history.json").exists()
    assert sorted(p.name for p in (tmp_path / "model_repo").iterdir()) == ["demo_risk_mlp", "demo_user_tower"]
    assert server.out().splitlines() == [f"hanzo: SERVING on {server.url}"]


async def test_an_encoder_left_without_its_scorer_is_replaced_whole(tmp_path):
    from hanzo.server.app.config import ServerConfig
    from hanzo.server.commands.first_start import FirstStart

    config = ServerConfig(model_repo=tmp_path / "model_repo", features={"data_dir": tmp_path / "hanzo_data"})
    first = FirstStart(config)
    (first.paths.model_repo / "search_encoder" / "1").mkdir(parents=True)  # a move cut short: no search/
    (first.paths.model_repo / "search_encoder" / "1" / "old").write_text("")
    first.paths.world.mkdir()
    first.paths.write_manifest({"search": {"state": "pending"}})

    async def trained(step, *args, nice=False):  # the child's work: a version of both models, and its report
        repo = first.paths.search_staging / "repo"
        for name in ("search_encoder", "search"):
            (repo / name / "1").mkdir(parents=True)
            (repo / name / "config.pbtxt").write_text("")
        (first.paths.search_staging / "report.json").write_text(json.dumps({
            "beats_bm25": True, "training": {"validation_ndcg10": 0.7, "validation_bm25_ndcg10": 0.6},
            "test": {}}))

    loaded = []

    class Repository:
        async def load(self, name):
            loaded.append(name)

    first._run_child = trained
    await first.improve_search(Repository())
    assert loaded == ["search_encoder", "search"]
    assert sorted(p.name for p in (first.paths.model_repo / "search_encoder").iterdir()) == ["1", "config.pbtxt"]
    assert not (first.paths.model_repo / "search_encoder" / "1" / "old").exists()
    assert first.paths.manifest()["search"]["state"] == "reranker" and not first.paths.search_staging.exists()
