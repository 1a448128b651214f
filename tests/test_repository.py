"""The model repository: version policies, swaps that drop nothing in flight, failed loads
that leave the serving version in place, unload."""
import asyncio
import shutil

import numpy as np
import pytest

from hanzo.server.models.errors import FailedPrecondition, NotFound, Unavailable
from hanzo.server.models import ModelRepository
from hanzo.server.models.repository import READY, UNAVAILABLE
from hanzo.training.demo_models import _config, risk_mlp
from hanzo.training.repository_writer import write_version

FEATURES = np.linspace(-1, 1, 32, dtype=np.float32).reshape(1, 32)


def write_risk(root, version, seed, policy=None):
    config = _config("risk", 16)
    if policy == "all":
        config.version_policy.all.SetInParent()
    elif isinstance(policy, list):
        config.version_policy.specific.versions.extend(policy)
    write_version(root, config, version, risk_mlp(seed))


async def test_latest_version_serves_and_explicit_versions_resolve(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1, policy="all")
    write_risk(root, 2, seed=2, policy="all")
    repo = ModelRepository(root)
    await repo.load_all()
    assert repo.get("risk").version == 2
    assert repo.get("risk", "1").version == 1
    v1 = (await repo.get("risk", "1").infer({"features": FEATURES}))["score"]
    v2 = (await repo.get("risk").infer({"features": FEATURES}))["score"]
    assert not np.allclose(v1, v2)
    with pytest.raises(NotFound, match="'risk' version 3 is not found"):
        repo.get("risk", "3")
    with pytest.raises(NotFound, match="Request for unknown model: .nope. is not found"):
        repo.get("nope")
    await repo.close()


async def test_version_policy_latest_and_specific(tmp_path):
    root = tmp_path / "repo"
    for v in (1, 2, 3):
        write_risk(root, v, seed=v, policy=[1, 3])
    repo = ModelRepository(root)
    await repo.load_all()
    assert [v.version for v in repo.ready_versions("risk")] == [1, 3]
    await repo.close()
    for v in (1, 2, 3):
        write_risk(root, v, seed=v)  # latest, num_versions 1
    repo = ModelRepository(root)
    await repo.load_all()
    assert [v.version for v in repo.ready_versions("risk")] == [3]
    await repo.close()


async def test_new_version_swaps_in_without_dropping_in_flight_requests(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    repo = ModelRepository(root)
    await repo.load_all()
    old = repo.get("risk")
    expected_old = (await old.infer({"features": FEATURES}))["score"]
    seen_versions: list[int] = []
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def client():
        while not stop.is_set():
            try:
                model = repo.get("risk")
                await model.infer({"features": FEATURES})
                seen_versions.append(model.version)
            except BaseException as exc:  # noqa: BLE001 - any failure is the test's finding
                failures.append(exc)
            await asyncio.sleep(0)

    clients = [asyncio.ensure_future(client()) for _ in range(8)]
    await asyncio.sleep(0.2)
    write_risk(root, 2, seed=2)
    await repo.load("risk")
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*clients)
    await repo.wait_retired()
    assert not failures
    assert 1 in seen_versions and seen_versions[-1] == 2
    assert repo.get("risk").version == 2
    assert [e.version for e in repo.index()] == ["2"]
    assert old.batcher._closed  # the replaced version retired after its requests finished
    assert old.stats.inference_count == seen_versions.count(1) + 1
    new = (await repo.get("risk").infer({"features": FEATURES}))["score"]
    assert not np.allclose(new, expected_old)
    await repo.close()


async def test_changed_config_reloads_the_same_version(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    repo = ModelRepository(root)
    await repo.load_all()
    before = repo.get("risk")
    config_path = root / "risk" / "config.pbtxt"
    config_path.write_text(config_path.read_text().replace("max_batch_size: 16", "max_batch_size: 4"))
    await repo.poll()
    after = repo.get("risk")
    assert after is not before and after.policy.max_batch_size == 4
    await repo.close()


async def test_failed_load_keeps_the_serving_version(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    repo = ModelRepository(root)
    await repo.load_all()
    (root / "risk" / "2").mkdir()
    (root / "risk" / "2" / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(FailedPrecondition, match="version 2"):  # an explicit load answers its failure
        await repo.load("risk")
    assert repo.get("risk").version == 1
    states = {e.version: (e.state, e.reason) for e in repo.index()}
    assert states["1"][0] == READY
    assert states["2"][0] == UNAVAILABLE and states["2"][1]
    await repo.close()


async def test_bad_config_is_reported_and_other_models_serve(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    (root / "broken").mkdir()
    (root / "broken" / "config.pbtxt").write_text("max_batch_size: [")
    repo = ModelRepository(root)
    await repo.load_all()
    assert repo.get("risk").version == 1
    with pytest.raises(Unavailable, match="config.pbtxt"):
        repo.get("broken")
    assert not repo.is_ready()
    await repo.close()


async def test_unload_and_poll_removal(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    repo = ModelRepository(root)
    await repo.load_all()
    shutil.rmtree(root / "risk")
    await repo.poll()
    with pytest.raises(NotFound):
        repo.get("risk")
    assert repo.index() == []
