"""Priority levels through a real server: dynamic_batching priority_levels served (the queue
order itself is tests/test_batcher.py's), a request's priority read from tritonclient's gRPC
and HTTP clients, and a level the model does not have refused naming the parameter, as is a
priority sent to a model without levels; a config whose levels cannot be served is refused."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from helpers import SLOW_WIDTH, ServerProcess, load_entry, slow_config, slow_model

from hanzo.loadtest.targets import free_port
from hanzo.training.repository_writer import write_version


def leveled_config(levels: int = 2, default: int = 2):
    config = slow_config("leveled")
    config.dynamic_batching.priority_levels = levels
    config.dynamic_batching.default_priority_level = default
    return config


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("priority") / "repo"
    write_version(root, leveled_config(), 1, slow_model(layers=2))
    write_version(root, slow_config("plain"), 1, slow_model(layers=2))
    process = ServerProcess(root, "--no-demo-models", "--http-port", str(free_port())).wait_ready()
    yield process
    assert process.terminate() == 0


def x(module):
    tensor = module.InferInput("x", [1, SLOW_WIDTH], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, SLOW_WIDTH), np.float32))
    return [tensor]


def test_a_priority_is_served_within_the_models_levels(server):
    client = grpcclient.InferenceServerClient(server.url)
    for priority in (0, 1, 2):
        assert client.infer("leveled", x(grpcclient), priority=priority).as_numpy("y").shape == (1, SLOW_WIDTH)
    with pytest.raises(InferenceServerException, match=r'parameters\["priority"\]: 5 is not a priority level') as e:
        client.infer("leveled", x(grpcclient), priority=5)
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="has no priority levels"):
        client.infer("plain", x(grpcclient), priority=1)
    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    assert http.infer("leveled", x(httpclient), priority=1).as_numpy("y").shape == (1, SLOW_WIDTH)
    with pytest.raises(InferenceServerException, match="5 is not a priority level of model"):
        http.infer("leveled", x(httpclient), priority=5)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.dynamic_batching.__setattr__("default_priority_level", 3),
     "default_priority_level must be in 1..priority_levels (2), not 3"),
    (lambda c: c.dynamic_batching.__setattr__("default_priority_level", 0),
     "default_priority_level must be in 1..priority_levels (2), not 0"),
    (lambda c: c.dynamic_batching.__setattr__("priority_levels", 1_000_000_000),
     "priority_levels 1000000000 is more than the 64 served"),
    (lambda c: c.dynamic_batching.priority_queue_policy[1].__setattr__("max_queue_size", 4),
     "dynamic_batching.priority_queue_policy is not served"),
])
async def test_levels_that_cannot_be_served_are_refused_by_name(tmp_path, change, message):
    config = leveled_config()
    change(config)
    write_version(tmp_path, config, 1, slow_model(layers=2))
    entry = await load_entry(tmp_path, "leveled")
    assert entry.state == "UNAVAILABLE" and message in entry.reason
