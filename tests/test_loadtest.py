"""The load harness against a real server: a short open-loop run beside the floor yields a
report with both phases and the server's own histogram; h2load mode where h2load exists."""
import json
import os
import subprocess
import sys

import pytest

from hanzo.loadtest import h2load

pytestmark = pytest.mark.slow


def loadtest(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hanzo.server.commands", "loadtest", "--url", url, *args],
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


def test_scenario_sweep_with_series_and_plots(demo_repo, server_process, tmp_path):
    server = server_process(demo_repo)
    requests = tmp_path / "features.jsonl"
    requests.write_text("".join(json.dumps({"entity": "user", "entity_ids": [f"u{i}"]}) + "\n" for i in range(20)))
    scenario = tmp_path / "mix.json"
    scenario.write_text(json.dumps({"name": "mix", "mix": [
        {"rpc": "GetFeatures", "request_file": "features.jsonl", "weight": 3},
        {"model": "demo_risk_mlp", "weight": 1}]}))
    out, plots = tmp_path / "sweep.json", tmp_path / "plots"
    run = loadtest(server.url, "--scenario", str(scenario), "--rates", "100,200", "--duration", "2",
                   "--warmup", "0.3", "--out", str(out), "--plots", str(plots))
    assert run.returncode == 0, run.stderr
    sweep = json.loads(out.read_text())["sweep"]
    assert [r["rate"] for r in sweep] == [100, 200] and all(r["method"] == "mixed" for r in sweep)
    for report in sweep:
        for phase in report["phases"]:
            kinds = phase["kinds"]
            assert set(kinds) == {"GetFeatures", "ModelInfer demo_risk_mlp"}
            assert sum(k["sent"] for k in kinds.values()) == phase["sent"] > 100
            assert 0.6 < kinds["GetFeatures"]["sent"] / phase["sent"] < 0.9  # weight 3 of 4
            assert all(k["errors"] == {} and k["e2e_ms"]["p50"] > 0 for k in kinds.values())
            # one row a measured second, adding up to the phase
            assert [row["t"] for row in phase["series"]] == [0, 1]
            assert sum(row["sent"] for row in phase["series"]) == phase["sent"]
            assert all(row["p50_ms"] <= row["p99_ms"] for row in phase["series"])
        server_phase = next(p for p in report["phases"] if p["name"] == "server")
        assert server_phase["server_count"] >= server_phase["ok"]  # both methods' own histograms
        assert all(k["server_ms"]["p99"] > 0 for k in server_phase["kinds"].values())
    page = (plots / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # throughput vs p99, and one over time per rate
    assert (plots / "throughput-vs-p99.png").stat().st_size > 1000


def test_server_latency_from_the_metrics_endpoint(demo_repo, server_process, tmp_path):
    from hanzo.loadtest.scrape import quantiles
    from hanzo.loadtest.targets import free_port

    metrics = free_port()
    server = server_process(demo_repo, "--metrics-port", str(metrics))
    out = tmp_path / "report.json"
    cpu = str(min(os.sched_getaffinity(0)))
    run = loadtest(server.url, "--model", "demo_risk_mlp", "--rate", "200", "--duration", "1", "--warmup", "0.3",
                   "--no-floor", "--metrics-url", f"127.0.0.1:{metrics}", "--client-cpus", cpu, "--out", str(out))
    assert run.returncode == 0, run.stderr
    phase = json.loads(out.read_text())["phases"][0]
    # overload figures: goodput against the offered rate, and the server's admission counters
    assert phase["goodput_rps"] > 100 and 0.5 < phase["goodput_share"] <= 1.5 and phase["late_ok"] == 0
    assert phase["failure_shares"] == {}
    counters = phase["server_counters"]
    assert counters["admitted"] >= phase["ok"] and counters["late"] == counters["rpc_late"] == 0
    assert counters["refused_queue_full"] == 0
    scraped = phase["server_metrics_ms"]
    # the scrape window holds the warm-up and measured calls, as the Admin histogram's does
    assert scraped["count"] == phase["server_count"] >= phase["ok"]
    assert 0 < scraped["p50"] <= scraped["p99"] <= scraped["p99.9"]
    assert "server from its metrics" in run.stdout
    # interpolation within buckets, as Prometheus' histogram_quantile
    q = quantiles({0.001: 0, 0.002: 0, float("inf"): 0}, {0.001: 50, 0.002: 100, float("inf"): 100})
    assert q["count"] == 100 and abs(q["p50"] - 1.0) < 1e-9 and abs(q["p99"] - 1.98) < 1e-9


def test_the_overload_benchmark_measures_one_rpc_end_to_end(demo_repo, server_process):
    """One RPC through the benchmark's steps with every load cut to a fraction of a second:
    the figures are there and add up (what they say is docs/results.md's business)."""
    from hanzo.loadtest import targets
    from hanzo.loadtest.fuzz_server import Served
    from hanzo.loadtest.overload import Plan, one_rpc

    metrics = targets.free_port()
    server = server_process(demo_repo, "--metrics-port", str(metrics))
    served = Served(server.url, server.proc.pid)
    plan = Plan(unloaded_rate=50.0, unloaded_s=0.5, step_s=0.5, first_rate=100.0, max_rate=200.0, bisections=1,
                overload_s=1.0, recovery_s=1.0)
    target = targets.model_infer(server.url, "demo_risk_mlp")
    entry, capacity = one_rpc(served, target, plan, [f"127.0.0.1:{metrics}"], None, lambda m: None)
    assert 50.0 <= capacity <= 200.0 and entry["capacity_rps"] == capacity and entry["unloaded_p99_ms"] > 0
    assert all("passed" in step for step in entry["sweep"]) and entry["at_0.8x"]["ok"] > 0
    overload = entry["overload"]
    assert overload["rate"] == 2 * capacity and overload["sent"] == overload["ok"] + sum(overload["errors"].values())
    assert overload["server_counters"]["admitted"] > 0 and overload["server_late"] is not None
    assert overload["rss_kib_before"] > 0 and overload["rss_kib_after"] > 0
    recovery = overload["recovery"]
    assert recovery["rate"] == 0.5 * capacity and len(recovery["series"]) == 4  # 0.25 s buckets
    assert set(entry["goals"]) >= {"goodput >= 70% of capacity", "recovery within 2 s"}
