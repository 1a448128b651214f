"""Triton's model control modes through a real server: explicit (only the models named at start,
then RepositoryModelLoad / Unload; what is unloaded stays listed UNAVAILABLE), poll (the
repository rescanned, explicit calls refused in Triton's words) and none (nothing changes what
loaded at start)."""
from __future__ import annotations

import shutil

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from helpers import ServerProcess, until

from hanzo.server.app.config import ServerConfig
from hanzo.training.triton_example_models import build_triton_examples


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    root = tmp_path_factory.mktemp("control") / "examples"
    build_triton_examples(root)
    return root


def _repo(examples, tmp_path):
    shutil.copytree(examples, tmp_path / "repo")
    return tmp_path / "repo"


def _index(client) -> dict[str, tuple[str, str]]:
    return {m.name: (m.version, m.state) for m in client.get_model_repository_index().models}


def test_explicit_mode_loads_only_what_is_named(examples, tmp_path):
    server = ServerProcess(_repo(examples, tmp_path), "--no-demo-models", "--model-control-mode", "explicit",
                           "--load-model", "simple").wait_ready()
    try:
        client = grpcclient.InferenceServerClient(server.url)
        # the others by name only, as Triton lists them
        assert _index(client) == {"simple": ("1", "READY"), "simple_identity": ("", ""), "simple_int8": ("", ""),
                                  "simple_string": ("", ""), "simple_sequence": ("", "")}
        client.load_model("simple_string")
        assert client.is_model_ready("simple_string")
        client.unload_model("simple")
        assert _index(client)["simple"] == ("1", "UNAVAILABLE")
        with pytest.raises(InferenceServerException, match="'simple' has no available versions"):
            client.get_model_metadata("simple")
    finally:
        server.terminate()


def test_poll_mode_follows_the_folder_and_refuses_explicit_calls(examples, tmp_path):
    repo = _repo(examples, tmp_path)
    moved = tmp_path / "simple_int8"
    shutil.move(repo / "simple_int8", moved)
    server = ServerProcess(repo, "--no-demo-models", "--model-control-mode", "poll", "--poll-seconds",
                           "0.2").wait_ready()
    try:
        client = grpcclient.InferenceServerClient(server.url)
        for call in (client.load_model, client.unload_model):
            with pytest.raises(InferenceServerException, match="not allowed if polling is enabled"):
                call("simple")
        shutil.move(moved, repo / "simple_int8")
        until(lambda: _index(client).get("simple_int8"), lambda entry: entry == ("1", "READY"),
              "the new folder loaded by a poll")
    finally:
        server.terminate()


def test_none_mode_keeps_what_loaded_at_start(examples, tmp_path):
    server = ServerProcess(_repo(examples, tmp_path), "--no-demo-models", "--model-control-mode",
                           "none").wait_ready()
    try:
        client = grpcclient.InferenceServerClient(server.url)
        assert all(state == "READY" for _, state in _index(client).values())
        with pytest.raises(InferenceServerException, match="not allowed with --model-control-mode none"):
            client.unload_model("simple")
        assert client.is_model_ready("simple")
    finally:
        server.terminate()


@pytest.mark.parametrize("options, words", [
    ({"model_control_mode": "none", "poll_seconds": 1.0}, r"does not \(use poll\)"),
    ({"model_control_mode": "poll", "load_models": ["simple"]}, "set model_control_mode"),
    ({"model_control_mode": "sometimes"}, "explicit, poll or none"),
])
def test_contradictory_settings_stop_the_start(options, words):
    with pytest.raises(ValueError, match=words):
        ServerConfig(**options)
