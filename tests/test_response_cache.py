"""The response cache: a model whose config enables it answers a request it has seen from
memory (Triton's "5 identical requests, 1 execution"), counted as Triton counts hits and misses,
within one byte budget for the server, the least recently used answers dropped first; a model
that enables it on a server without a budget does not load, and says why."""
from __future__ import annotations

import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families

from helpers import ServerProcess, until

from hanzo.loadtest.targets import free_port
from hanzo.server.models.response_cache import ResponseCache, request_key
from hanzo.training.triton_example_models import build_triton_examples


def test_keys_tell_requests_apart_and_the_budget_drops_the_least_recently_used():
    a = {"x": np.arange(4, dtype=np.int32)}
    assert request_key("m", 1, a) == request_key("m", 1, {"x": np.arange(4, dtype=np.int32)})
    for other in ({"x": np.arange(1, 5, dtype=np.int32)}, {"x": np.arange(4, dtype=np.int64)},
                  {"x": np.arange(4, dtype=np.int32).reshape(2, 2)}, {"y": np.arange(4, dtype=np.int32)},
                  {"x": np.array([b"ab", b"c"], dtype=object)}):
        assert request_key("m", 1, a) != request_key("m", 1, other)
    assert request_key("m", 1, a) != request_key("m", 2, a) != request_key("n", 1, a)
    assert request_key("m", 1, {"x": np.array([b"ab", b"c"], dtype=object)}) != \
        request_key("m", 1, {"x": np.array([b"a", b"bc"], dtype=object)})

    cache = ResponseCache(capacity_bytes=3 * (400 + 128))
    answer = {"y": np.zeros(100, np.float32)}  # 400 bytes
    for i in range(3):
        cache.put(bytes([i]), answer)
    assert cache.get(b"\x00") is not None  # 0 is now the most recently used
    cache.put(b"\x03", answer)
    assert cache.get(b"\x01") is None and cache.get(b"\x00") is not None and len(cache) == 3
    assert cache.used_bytes <= cache.capacity_bytes and cache.evicted == 1
    kept = cache.get(b"\x03")["y"]
    answer["y"][:] = 7  # the caller's array changing later does not change the answer kept
    assert not kept.flags.writeable and kept.sum() == 0
    cache.put(b"big", {"y": np.zeros(10_000, np.float32)})  # larger than the whole budget: not kept
    assert cache.get(b"big") is None and len(cache) == 3


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache") / "repo"
    build_triton_examples(root)
    config = root / "simple" / "config.pbtxt"
    config.write_text(config.read_text() + "\nresponse_cache { enable: true }\n")
    return root


def _ask(client, first: int) -> np.ndarray:
    tensors = [grpcclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    tensors[0].set_data_from_numpy(np.full((1, 16), first, np.int32))
    tensors[1].set_data_from_numpy(np.ones((1, 16), np.int32))
    return client.infer("simple", tensors).as_numpy("OUTPUT0")


def test_identical_requests_run_the_model_once(repo):
    metrics_port = free_port()
    server = ServerProcess(repo, "--no-demo-models", "--response-cache-bytes", str(1 << 20), "--metrics-port",
                           str(metrics_port), "--metrics-names", "triton").wait_ready()
    try:
        client = grpcclient.InferenceServerClient(server.url)
        for _ in range(5):
            assert (_ask(client, 3) == 4).all()
        assert (_ask(client, 9) == 10).all()  # another request: computed
        stats = client.get_inference_statistics("simple").model_stats[0]
        assert stats.execution_count == 2 and stats.inference_count == 2
        assert stats.inference_stats.cache_hit.count == 4 and stats.inference_stats.cache_miss.count == 2
        assert stats.inference_stats.success.count == 6
        other = client.get_inference_statistics("simple_int8").model_stats[0]
        assert other.inference_stats.cache_hit.count == 0  # only the model that enables it caches

        def page() -> dict:
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
            return {f.name: f for f in text_string_to_metric_families(text)}

        families = until(page, lambda f: "nv_cache_num_hits_per_model" in f, "the cache's metrics")
        hits = {s.labels["model"]: s.value for s in families["nv_cache_num_hits_per_model"].samples}
        assert hits == {"simple": 4}
        assert families["hanzo_response_cache_bytes"].samples[0].value > 0
    finally:
        server.terminate()


def test_a_model_that_enables_the_cache_on_a_server_without_one_does_not_load(repo):
    server = ServerProcess(repo, "--no-demo-models")  # never ready: a model that cannot load keeps it so
    try:
        client = grpcclient.InferenceServerClient(server.url)

        def index() -> dict:
            try:
                return {m.name: m for m in client.get_model_repository_index().models}
            except grpcclient.InferenceServerException:  # still starting
                return {}

        entries = until(index, lambda got: got.get("simple") is not None and got["simple"].state == "UNAVAILABLE",
                        "the model refused", process=server)
        assert "--response-cache-bytes" in entries["simple"].reason
        assert client.is_model_ready("simple_int8")
    finally:
        server.terminate()
