"""The load harness against a real server: a short open-loop run beside the floor yields a
report with both phases and the server's own histogram; h2load mode where h2load exists."""
import json
import subprocess
import sys

import pytest

from hanzo.loadtest import h2load

pytestmark = pytest.mark.slow


def loadtest(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hanzo.server.cli", "loadtest", "--url", url, *args],
                          capture_output=True, text=True, timeout=120)


def test_open_loop_report_with_floor_and_server_side_latency(demo_repo, server_process, tmp_path):
    server = server_process(demo_repo)
    out = tmp_path / "report.json"
    run = loadtest(server.url, "--model", "demo_risk_mlp", "--rate", "200", "--duration", "1", "--warmup", "0.3",
                   "--out", str(out))
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    phases = {p["name"]: p for p in report["phases"]}
    assert set(phases) == {"floor", "server"}
    for phase in phases.values():
        assert phase["errors"] == {} and phase["ok"] == phase["sent"] > 100
        assert 0 < phase["e2e_ms"]["p50"] <= phase["e2e_ms"]["p99"] <= phase["e2e_ms"]["max"]
        # Both servers measured themselves with the same edge code.
        assert phase["server_count"] >= phase["ok"] and phase["server_ms"]["p99"] > 0
    assert "floor" in run.stdout and "server" in run.stdout


def test_closed_loop_on_a_commerce_rpc_reports_the_refusal(demo_repo, server_process):
    server = server_process(demo_repo)
    run = loadtest(server.url, "--rpc", "QuotePrice", "--mode", "closed", "--duration", "0.5")
    assert run.returncode == 2
    assert "UNAVAILABLE" in run.stderr and "train pricing" in run.stderr  # no demand model configured


@pytest.mark.skipif(not h2load.available(), reason="h2load is not installed (apt-get install nghttp2-client)")
def test_h2load_throughput_confirmed_by_server_counters(demo_repo, server_process, tmp_path):
    server = server_process(demo_repo)
    out = tmp_path / "h2.json"
    run = loadtest(server.url, "--model", "demo_user_tower", "--mode", "h2load", "--clients", "2", "--streams", "4",
                   "--duration", "1", "--warmup", "0.2", "--out", str(out))
    assert run.returncode == 0, run.stderr
    phases = {p["name"]: p for p in json.loads(out.read_text())["phases"]}
    assert phases["server"]["achieved_rps"] > 0
    # Every HTTP answer h2load counted was a gRPC success by the server's own statistics.
    assert phases["server"]["ok"] >= phases["server"]["sent"] > 0
    assert phases["floor"]["ok"] >= phases["floor"]["sent"] > 0
