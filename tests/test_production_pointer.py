"""Production pointers: a new version folder arrives as a candidate and never serves unnamed
requests by itself; promote and roll back switch at once, drop nothing in flight, survive a
restart, and a version that does not load leaves production as it was."""
import asyncio
import json

import numpy as np
import pytest

from hanzo.server.models import ModelRepository
from hanzo.server.models.errors import FailedPrecondition, NotFound
from hanzo.server.models.production import pin_production, read_pointer
from hanzo.server.models.promotion import Promotions
from hanzo.server.models.repository import READY, UNAVAILABLE
from hanzo.training.demo_models import _config, risk_mlp
from hanzo.training.repository_writer import write_version
from test_repository import FEATURES, write_risk


def states(repo):
    return {int(e.version): (e.state, e.reason) for e in repo.index() if e.version}


async def scores(repo, version=""):
    return (await repo.get("risk", version).infer({"features": FEATURES}))["score"]


async def with_candidate(root) -> ModelRepository:
    """A loaded repository whose model `risk` has version 1 in production and 2 as its candidate."""
    write_risk(root, 1, seed=1)
    pin_production(root / "risk", by="test")
    write_risk(root, 2, seed=2)
    repo = ModelRepository(root)
    await repo.load_all()
    return repo


async def test_a_new_version_is_a_candidate_until_promoted(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    assert pin_production(root / "risk", by="test").version == 1
    write_risk(root, 2, seed=2)  # version_policy latest 1: without the pointer, 2 would replace 1
    repo = ModelRepository(root)
    await repo.load_all()
    assert repo.get("risk").version == 1  # unnamed requests: production
    assert repo.candidate("risk").version == 2 and repo.get("risk", "2").version == 2  # named: the candidate
    assert states(repo)[2][0] == READY and "candidate" in states(repo)[2][1]
    write_risk(root, 3, seed=3)
    await repo.poll()  # the poller loads the newer candidate and never promotes
    assert repo.get("risk").version == 1 and repo.candidate("risk").version == 3
    assert sorted(v.version for v in repo.ready_versions("risk")) == [1, 3]
    await repo.close()


async def test_promote_and_rollback_switch_without_dropping_calls(tmp_path):
    root = tmp_path / "repo"
    repo = await with_candidate(root)
    promotions = Promotions(repo)
    v1, v2 = await scores(repo, "1"), await scores(repo, "2")
    assert not np.allclose(v1, v2)
    failures, served = [], []
    stop = asyncio.Event()

    async def caller():
        while not stop.is_set():
            try:
                served.append((await repo.get("risk").infer({"features": FEATURES}))["score"])
            except Exception as exc:  # noqa: BLE001 - any failure fails the test
                failures.append(exc)
            await asyncio.sleep(0)

    callers = [asyncio.create_task(caller()) for _ in range(8)]
    await asyncio.sleep(0.05)
    assert await promotions.promote("risk", 0, by="alice") == ["risk"]  # 0: the candidate
    assert repo.get("risk").version == 2
    assert np.allclose(await scores(repo), v2)
    # the replaced version stays loaded, so the rollback builds nothing
    assert repo.get("risk", "1").version == 1 and "rollback" in states(repo)[1][1]
    await asyncio.sleep(0.05)
    await promotions.rollback("risk", by="bob")
    assert repo.get("risk").version == 1
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*callers)
    assert failures == [] and len(served) > 50
    pointer = read_pointer(root / "risk")
    assert (pointer.version, pointer.history, pointer.action, pointer.by) == (1, (1,), "rollback", "bob")
    with pytest.raises(FailedPrecondition, match="no earlier promoted version"):
        await promotions.rollback("risk", by="bob")
    await repo.close()


async def test_the_last_promoted_version_serves_after_a_restart(tmp_path):
    root = tmp_path / "repo"
    for v in (1, 2, 3):
        write_risk(root, v, seed=v)
    (root / "risk" / "production.json").write_text(json.dumps({"version": 2, "history": [1, 2]}))
    repo = ModelRepository(root)
    await repo.load_all()
    assert repo.get("risk").version == 2 and repo.candidate("risk").version == 3
    assert sorted(v.version for v in repo.ready_versions("risk")) == [1, 2, 3]
    await repo.close()
    # production's folder broken: the version promoted before it serves, never the candidate
    (root / "risk" / "2" / "model.onnx").write_bytes(b"not a model")
    repo = ModelRepository(root)
    await repo.load_all()
    assert repo.get("risk").version == 1
    assert states(repo)[2][0] == UNAVAILABLE
    await repo.close()


async def test_a_version_that_does_not_load_is_not_promoted(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    pin_production(root / "risk", by="test")
    repo = ModelRepository(root)
    await repo.load_all()
    (root / "risk" / "2").mkdir()
    (root / "risk" / "2" / "model.onnx").write_bytes(b"not a model")
    promotions = Promotions(repo)
    with pytest.raises(FailedPrecondition, match="version 2 did not load, so nothing was switched"):
        await promotions.promote("risk", 2, by="alice")
    assert repo.get("risk").version == 1 and read_pointer(root / "risk").version == 1
    with pytest.raises(NotFound, match="no version folder 7"):
        await promotions.promote("risk", 7, by="alice")
    with pytest.raises(NotFound, match="not in the repository"):
        await promotions.promote("../risk", 1, by="alice")
    with pytest.raises(FailedPrecondition, match="version 2 did not load"):  # the candidate: the newest folder
        await promotions.promote("risk", 0, by="alice")
    (root / "risk" / "2" / "model.onnx").unlink()
    (root / "risk" / "2").rmdir()
    with pytest.raises(FailedPrecondition, match="no candidate"):
        await promotions.promote("risk", 0, by="alice")
    await repo.close()


async def test_companions_move_with_their_model(tmp_path):
    root = tmp_path / "repo"
    for name in ("risk", "risk_helper"):
        for v in (1, 2):
            write_version(root, _config(name, 16), v, risk_mlp(v))
        (root / name / "production.json").write_text(json.dumps({"version": 1, "history": [1]}))
    repo = ModelRepository(root)
    await repo.load_all()
    promotions = Promotions(repo, companions={"risk": ("risk_helper",)})
    assert await promotions.promote("risk", 2, by="alice") == ["risk_helper", "risk"]  # the companion first
    assert repo.get("risk").version == 2 and repo.get("risk_helper").version == 2
    await promotions.rollback("risk", by="alice")
    assert repo.get("risk").version == 1 and repo.get("risk_helper").version == 1
    await repo.close()


def test_a_damaged_pointer_is_refused_by_name(tmp_path):
    from hanzo.server.models.config import ConfigError

    (tmp_path / "production.json").write_text('{"version": "two"}')
    with pytest.raises(ConfigError, match="production.json: not a production pointer"):
        read_pointer(tmp_path)


async def test_a_first_promotion_can_be_rolled_back_to_what_served_before(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1, policy="all")
    write_risk(root, 2, seed=2, policy="all")
    repo = ModelRepository(root)
    await repo.load_all()
    assert repo.get("risk").version == 2  # no pointer: Triton's rule, the newest
    promotions = Promotions(repo)
    await promotions.promote("risk", 1, by="alice")
    assert repo.get("risk").version == 1 and read_pointer(root / "risk").history == (2, 1)
    await promotions.rollback("risk", by="alice")
    assert repo.get("risk").version == 2
    await repo.close()


async def test_a_broken_production_keeps_what_served_and_never_the_candidate(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    repo = ModelRepository(root)
    await repo.load_all()
    (root / "risk" / "2").mkdir()
    (root / "risk" / "2" / "model.onnx").write_bytes(b"not a model")
    await repo.poll()
    assert repo.get("risk").version == 1  # version 2 fails: 1 serves on
    assert pin_production(root / "risk", by="train").version == 2  # a training run pins the newest folder
    write_risk(root, 3, seed=3)
    await repo.poll()
    assert repo.get("risk").version == 1 and repo.candidate("risk").version == 3
    assert "production version 2 did not load" in states(repo)[1][1]
    await repo.close()


async def test_a_promotion_whose_caller_goes_away_finishes_whole(tmp_path):
    root = tmp_path / "repo"
    repo = await with_candidate(root)
    promotions = Promotions(repo)
    task = asyncio.create_task(promotions.promote("risk", 2, by="alice"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):  # the shielded switch goes on without its caller
        if repo.get("risk").version == 2:
            break
        await asyncio.sleep(0.05)
    async with promotions._lock:  # and has ended
        assert repo.get("risk").version == read_pointer(root / "risk").version == 2
    await repo.close()


async def test_promoting_the_candidate_loads_one_written_since_the_last_load(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    pin_production(root / "risk", by="test")
    repo = ModelRepository(root)
    await repo.load_all()
    write_risk(root, 2, seed=2)  # after `hanzo retrain`, on a server that does not poll
    assert repo.candidate("risk") is None
    await Promotions(repo).promote("risk", 0, by="alice")  # the candidate: the newest folder above production
    assert repo.get("risk").version == 2 and read_pointer(root / "risk").history == (1, 2)
    await repo.close()
