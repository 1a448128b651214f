"""`hanzo tune` against a real server: every configuration of the grid loaded through
RepositoryModelLoad and ramped, the original config.pbtxt put back (or the recommended one
left with --apply, and served), and a budget nothing meets said plainly."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tritonclient.grpc as tc

pytestmark = pytest.mark.slow


def _tune(url: str, repo, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hanzo.server.commands", "tune", "demo_risk_mlp", "--url", url,
                           "--model-repo", str(repo), "--rate", "100", "--max-rate", "400", "--duration", "0.5",
                           "--warmup", "0.2", "--delays-us", "0", "--instances", "1", *args],
                          capture_output=True, text=True, timeout=300)


def test_tune_sweeps_recommends_and_restores(demo_repo, server_process, tmp_path):
    server = server_process(demo_repo)
    config_path = demo_repo / "demo_risk_mlp" / "config.pbtxt"
    original = config_path.read_text()
    out, picture = tmp_path / "tune.json", tmp_path / "tune.png"
    run = _tune(server.url, demo_repo, "--p99-budget-ms", "100", "--batch-sizes", "1,16", "--out", str(out),
                "--plot", str(picture))
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert [o["candidate"]["max_batch_size"] for o in report["outcomes"]] == [1, 16]
    for outcome in report["outcomes"]:
        assert [p["rate"] for p in outcome["points"]] == [100, 200, 400]  # all inside a generous budget
        assert outcome["best_rps"] > 300
    assert report["recommended"] in [o["candidate"] for o in report["outcomes"]] and not report["applied"]
    assert "<- recommended" in run.stdout and picture.stat().st_size > 1000
    assert config_path.read_text() == original  # put back, and served again
    client = tc.InferenceServerClient(server.url)
    assert client.get_model_config("demo_risk_mlp").config.max_batch_size == 64

    applied = _tune(server.url, demo_repo, "--p99-budget-ms", "100", "--batch-sizes", "8", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "max_batch_size: 8" in config_path.read_text()
    assert client.get_model_config("demo_risk_mlp").config.max_batch_size == 8

    impossible = _tune(server.url, demo_repo, "--p99-budget-ms", "0.001", "--batch-sizes", "8")
    assert impossible.returncode == 0, impossible.stderr
    assert "no configuration kept p99 inside the budget" in impossible.stdout
    assert "max_batch_size: 8" in config_path.read_text()  # what was there before this run
