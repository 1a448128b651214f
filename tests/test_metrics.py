"""Prometheus metrics from a real server: Triton's per-model counters under hanzo_, the
per-RPC latency histogram, the batch-size histogram, the store's gauges; scraped over HTTP and
parsed with prometheus_client's own parser."""
from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
from prometheus_client.parser import text_string_to_metric_families
from test_kserve import demo_inputs, infer_inputs

from hanzo.loadtest.targets import free_port

pytestmark = pytest.mark.slow


def _scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _value(samples, name: str, **labels) -> float:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


def test_metrics_follow_the_traffic(demo_repo, server_process):
    port = free_port()
    server = server_process(demo_repo, "--metrics-port", str(port))
    client = tc.InferenceServerClient(server.url)
    before = _scrape(port)
    model = {"model": "demo_risk_mlp", "version": "1"}
    assert _value(before["hanzo_model_ready"], "hanzo_model_ready", **model) == 1
    start = _value(before["hanzo_inference_count"], "hanzo_inference_count_total", **model)
    rows = [1, 3, 8, 2, 5]
    for i, n in enumerate(rows):
        client.infer("demo_risk_mlp", infer_inputs(demo_inputs(n, seed=i)["demo_risk_mlp"]))
    method = "/inference.GRPCInferenceService/ModelInfer"
    for _ in range(50):  # a call's latency is recorded when gRPC reports it done, just after the client has it
        after = _scrape(port)
        if _value(after["hanzo_rpc_duration_seconds"], "hanzo_rpc_duration_seconds_count", method=method) >= len(rows):
            break
        time.sleep(0.1)
    assert _value(after["hanzo_inference_count"], "hanzo_inference_count_total", **model) == start + sum(rows)
    executions = _value(after["hanzo_inference_exec_count"], "hanzo_inference_exec_count_total", **model)
    assert executions >= len(rows)
    assert _value(after["hanzo_inference_request_success"], "hanzo_inference_request_success_total",
                  **model) >= len(rows)
    assert _value(after["hanzo_inference_compute_infer_duration_us"],
                  "hanzo_inference_compute_infer_duration_us_total", **model) > 0
    # batch sizes: every execution in the +Inf bucket, rows summed
    batch = after["hanzo_batch_size"]
    assert _value(batch, "hanzo_batch_size_bucket", le="+Inf", **model) == executions
    earlier = _value(before["hanzo_inference_exec_count"], "hanzo_inference_exec_count_total", **model)
    small = _value(batch, "hanzo_batch_size_bucket", le="8", **model)
    assert small - _value(before["hanzo_batch_size"], "hanzo_batch_size_bucket", le="8", **model) == \
        executions - earlier  # none of ours above 8 rows
    assert _value(batch, "hanzo_batch_size_sum", **model) == start + sum(rows)
    # the per-RPC histogram saw the calls: cumulative buckets that never fall
    rpc = after["hanzo_rpc_duration_seconds"]
    count = _value(rpc, "hanzo_rpc_duration_seconds_count", method=method)
    assert count >= len(rows)
    buckets = [s.value for s in rpc if s.name.endswith("_bucket") and s.labels["method"] == method]
    assert buckets == sorted(buckets) and buckets[-1] == count
    assert 0 < _value(rpc, "hanzo_rpc_duration_seconds_sum", method=method) < count * 5
    # admission: the calls went through ModelInfer's gate, none refused
    assert _value(after["hanzo_admission_admitted"], "hanzo_admission_admitted_total", method=method) >= len(rows)
    assert _value(after["hanzo_admission_limit"], "hanzo_admission_limit", method=method) >= 1
    assert _value(after["hanzo_admission_refused"], "hanzo_admission_refused_total", method=method,
                  reason="queue_full") == 0
    assert "hanzo_feature_entities" in after and "hanzo_events_applied" in after
    assert np.isfinite(_value(after["hanzo_event_log_bytes"], "hanzo_event_log_bytes"))
    # every series the Grafana dashboard asks for is one the server exports
    # (a family without samples yet, as failures before the first one, still declares itself)
    exported = set(after) | {sample.name for samples in after.values() for sample in samples}
    dashboard = json.loads((Path(__file__).parent.parent / "loadtest/dashboards/hanzo-grafana.json").read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"hanzo_[a-z_]+", target["expr"])}
    asked = {re.sub(r"_total$", "", name) if name not in exported else name for name in asked}
    assert asked and asked <= exported, asked - exported
    # and every series the alerting rules name
    rules = (Path(__file__).parent.parent / "loadtest/dashboards/hanzo-alerts.yml").read_text()
    alerted = {re.sub(r"_total$", "", name) if name not in exported else name
               for line in rules.splitlines() if line.strip().startswith("expr:")
               for name in re.findall(r"hanzo_[a-z_]+", line)}
    assert alerted and alerted <= exported, alerted - exported
