"""Model loads that fail: an explicit load answers the failure, a restart falls back from a
broken newest version, a poll does not rebuild a broken version every second, the index says
why, and readiness is false while a model has no version that loads."""
import logging
import shutil

import numpy as np
import onnxruntime as ort
import pytest
from hanzo.server.models import ModelRepository, RepositoryOptions
from hanzo.server.models.errors import FailedPrecondition, NotFound, Unavailable
from hanzo.server.models.repository import READY, UNAVAILABLE
from test_repository import FEATURES, write_risk


def break_version(root, version, content=b"not an onnx model"):
    folder = root / "risk" / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(content)


def states(repo):
    return {(e.name, e.version): (e.state, e.reason) for e in repo.index()}


def counting_builds(repo):
    """Record each version build the repository starts."""
    calls = []
    build = repo._build

    def counted(name, number, *args):
        calls.append(number)
        return build(name, number, *args)

    repo._build = counted
    return calls


async def test_explicit_load_of_a_corrupt_version_answers_its_reason(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    repo = ModelRepository(root)
    await repo.load_all()
    break_version(root, 2)
    with pytest.raises(FailedPrecondition, match=r"'risk' failed to load version 2: .*\(serving version 1\)"):
        await repo.load("risk")
    assert repo.get("risk").version == 1  # what served serves on
    found = states(repo)
    assert found[("risk", "2")][0] == UNAVAILABLE and "INVALID_PROTOBUF" in found[("risk", "2")][1]
    assert found[("risk", "1")] == (READY, "")
    assert repo.is_ready()
    with pytest.raises(NotFound):
        await repo.load("no_such_model")
    await repo.close()


async def test_config_syntax_error_fails_the_load_and_shows_beside_the_serving_version(tmp_path, caplog):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    repo = ModelRepository(root)
    await repo.load_all()
    (root / "risk" / "config.pbtxt").write_text("max_batch_size: [")
    with pytest.raises(FailedPrecondition, match=r"'risk' failed to load: .*config.pbtxt"):
        await repo.load("risk")
    caplog.clear()
    for _ in range(3):
        await repo.poll()
    assert [r for r in caplog.records if r.getMessage() == "model not loaded"] == []  # logged once, not per poll
    assert repo.get("risk").version == 1
    state, reason = states(repo)[("risk", "1")]
    assert state == READY and "last load failed" in reason and "config.pbtxt" in reason
    assert np.isfinite((await repo.get("risk").infer({"features": FEATURES}))["score"]).all()
    await repo.close()


async def test_config_error_of_a_model_that_never_served(tmp_path):
    root = tmp_path / "repo"
    (root / "broken").mkdir(parents=True)
    (root / "broken" / "config.pbtxt").write_text("max_batch_size: [")
    repo = ModelRepository(root)
    await repo.load_all()
    assert not repo.is_ready()
    entry = states(repo)[("broken", "")]
    assert entry[0] == UNAVAILABLE and "config.pbtxt" in entry[1]
    with pytest.raises(FailedPrecondition, match="'broken' failed to load: .*config.pbtxt"):
        await repo.load("broken")
    await repo.close()


async def test_restart_falls_back_from_a_broken_newest_version(tmp_path, caplog):
    root = tmp_path / "repo"
    for v in (1, 2):
        write_risk(root, v, seed=v)  # version_policy latest, num_versions 1
    break_version(root, 3)
    repo = ModelRepository(root)
    with caplog.at_level(logging.INFO):
        await repo.load_all()
    assert repo.get("risk").version == 2
    assert repo.is_ready()
    found = states(repo)
    assert found[("risk", "2")] == (READY, "")
    assert found[("risk", "3")][0] == UNAVAILABLE and found[("risk", "3")][1]
    assert ("risk", "1") not in found
    fell_back = [r for r in caplog.records if r.getMessage() == "model version fell back"]
    assert len(fell_back) == 1 and fell_back[0].model_version == "2" and "version 3" in fell_back[0].reason
    # An explicit load of the same state is a failed load: the newest version did not load.
    with pytest.raises(FailedPrecondition, match=r"version 3: .*\(serving version 2\)"):
        await repo.load("risk")
    assert repo.get("risk").version == 2
    await repo.close()


async def test_every_version_broken_is_not_ready_and_says_why(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    break_version(root, 1)
    break_version(root, 2)
    repo = ModelRepository(root)
    await repo.load_all()
    assert not repo.is_ready()
    found = states(repo)
    assert found[("risk", "1")][0] == UNAVAILABLE and found[("risk", "2")][0] == UNAVAILABLE
    with pytest.raises(Unavailable, match="version 1: .*version 2: "):
        repo.get("risk")
    with pytest.raises(FailedPrecondition, match="no version of it serves"):
        await repo.load("risk")
    await repo.close()


async def test_gpu_asked_for_where_there_is_none_is_not_ready(tmp_path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the case is a CPU-only machine")
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    repo = ModelRepository(root, RepositoryOptions(device="cuda"))
    await repo.load_all()
    assert not repo.is_ready()
    assert "onnxruntime-gpu" in states(repo)[("risk", "1")][1]
    await repo.close()


async def test_poll_backs_off_a_broken_version_and_retries_changed_files(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    now = [0.0]
    repo = ModelRepository(root, RepositoryOptions(retry_first_s=1.0, retry_max_s=4.0), clock=lambda: now[0])
    await repo.load_all()
    builds = counting_builds(repo)
    break_version(root, 2)
    for _ in range(5):
        await repo.poll()
    assert builds == [2]  # tried once, then held back
    assert states(repo)[("risk", "2")][0] == UNAVAILABLE and repo.get("risk").version == 1
    now[0] = 1.0
    await repo.poll()
    await repo.poll()
    assert builds == [2, 2]  # retried unchanged after 1 s, then waits 2 s
    now[0] = 2.5
    await repo.poll()
    assert builds == [2, 2]
    now[0] = 3.0
    await repo.poll()
    assert builds == [2, 2, 2]  # then 4 s, the cap
    now[0] = 7.0
    await repo.poll()
    now[0] = 11.0
    await repo.poll()
    assert builds == [2, 2, 2, 2, 2]
    break_version(root, 2, b"other garbage, other size")  # changed files: tried at once
    await repo.poll()
    assert builds == [2] * 6
    with pytest.raises(FailedPrecondition):
        await repo.load("risk")  # an explicit load always retries
    assert builds == [2] * 7
    write_risk(root, 2, seed=2)
    await repo.poll()
    assert builds == [2] * 8 and repo.get("risk").version == 2
    await repo.wait_retired()
    assert states(repo) == {("risk", "2"): (READY, "")}
    await repo.close()


async def test_readiness_holds_during_a_reload_and_is_reported_on_change(tmp_path):
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    repo = ModelRepository(root)
    await repo.load_all()
    reported = []

    async def record(ready):
        reported.append(ready)

    repo.on_readiness(record)
    seen_while_building = []
    build = repo._build

    def watched(*args):
        seen_while_building.append(repo.is_ready())
        return build(*args)

    repo._build = watched
    write_risk(root, 2, seed=2)
    await repo.poll()
    assert seen_while_building == [True] and repo.get("risk").version == 2
    (root / "broken").mkdir()
    (root / "broken" / "config.pbtxt").write_text("max_batch_size: [")
    await repo.poll()
    await repo.poll()
    assert reported == [False]
    (root / "broken" / "config.pbtxt").unlink()
    (root / "broken").rmdir()
    await repo.poll()
    assert reported == [False, True]
    await repo.close()


@pytest.mark.slow
def test_load_and_infer_errors_through_a_real_server(tmp_path, server_process):
    """RepositoryModelLoad answers a failed load with its reason; ModelInfer with an id past
    an embedding table answers INVALID_ARGUMENT naming the input, not INTERNAL."""
    import tritonclient.grpc as tc
    from test_index_ranges import feeds, write_lookup
    from tritonclient.utils import InferenceServerException

    root = tmp_path / "model_repo"
    write_risk(root, 1, seed=1)
    write_lookup(root)
    server = server_process(root, "--no-demo-models")
    client = tc.InferenceServerClient(server.url)

    def expect(code, match, call, *args):
        with pytest.raises(InferenceServerException) as info:
            call(*args)
        assert info.value.status() == f"StatusCode.{code}", (args, info.value.message())
        assert match in info.value.message(), info.value.message()

    def infer(arrays):
        inputs = []
        for name, value in arrays.items():
            tensor = tc.InferInput(name, list(value.shape), {"int64": "INT64", "int32": "INT32",
                                                             "float32": "FP32"}[value.dtype.name])
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        return client.infer("lookup", inputs)

    assert infer(feeds(ids=[[0, 9, -10, 3], [1, 2, 3, 4]])).as_numpy("out").shape == (2, 3)
    expect("INVALID_ARGUMENT", 'input "ids": values must lie in [-10, 10)', infer,
           feeds(ids=[[0, 1, 2, 123456], [0, 0, 0, 0]]))

    break_version(root, 2)
    expect("FAILED_PRECONDITION", "'risk' failed to load version 2: ", client.load_model, "risk")
    assert client.is_model_ready("risk") and client.is_server_ready()
    (root / "risk" / "config.pbtxt").write_text("max_batch_size: [")
    expect("FAILED_PRECONDITION", "config.pbtxt", client.load_model, "risk")
    index = {(m["name"], m.get("version", "")): m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index[("risk", "1")]["state"] == "READY" and "config.pbtxt" in index[("risk", "1")]["reason"]
    expect("NOT_FOUND", "not in the repository", client.load_model, "nope")

    # names are names: a model folder outside the repository is out of reach however it is named
    outside = root.parent / "outside" / "evil_model"
    shutil.copytree(root / "lookup", outside)
    before = client.get_model_repository_index(as_json=True)
    for name in (str(outside), "../outside/evil_model", "/etc", "", ".", "..", "lookup/1", "x" * 200):
        expect("NOT_FOUND", "not in the repository", client.load_model, name)
        expect("NOT_FOUND", "not loaded", client.unload_model, name)
    expect("INVALID_ARGUMENT", "model_name: 5000 characters", client.load_model, "x" * 5000)
    assert client.get_model_repository_index(as_json=True) == before


@pytest.mark.parametrize("extra, named", [
    ('model_transaction_policy { decoupled: true }', "model_transaction_policy"),
    ('model_operations { op_library_filename: "ops.so" }', "model_operations"),
    ('dynamic_batching { priority_levels: 2 default_priority_level: 1 preserve_ordering: true }',
     "dynamic_batching.preserve_ordering"),
    ('sequence_batching { iterative_sequence: true }', "sequence_batching.iterative_sequence"),
    ('optimization { execution_accelerators { cpu_execution_accelerator [{ name: "openvino" }] } }', "optimization"),
    ('input [{ name: "features" data_type: TYPE_FP32 dims: [32] optional: true }]', "input[0].optional"),
    ('parameters { key: "intra_op_threads" value { string_value: "2" } }', 'parameters["intra_op_threads"]'),
])
async def test_config_it_does_not_serve_is_refused_naming_each_field(tmp_path, extra, named):
    """Nothing in config.pbtxt is accepted and then ignored."""
    root = tmp_path / "repo"
    write_risk(root, 1, seed=1)
    (root / "risk" / "config.pbtxt").write_text(f'max_batch_size: 8\n{extra}\n')  # inputs from the model
    repo = ModelRepository(root)
    with pytest.raises(FailedPrecondition, match="not served by Hanzo") as info:
        await repo.load("risk")
    assert named in str(info.value), info.value
    await repo.close()
