"""config.pbtxt parsing, completion from the model, and the batching policy it yields."""
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from hanzo.server.models.config import (ConfigError, TensorSpec, batching_policy, complete_io, io_specs,
                                        load_config, parse_config_text, select_versions)
from hanzo.server.models.datatypes import BY_KSERVE

CONFIG = """
name: "risk"
backend: "onnxruntime"
max_batch_size: 16
input [ { name: "features" data_type: TYPE_FP32 dims: [ 32 ] } ]
output [ { name: "score" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 250
  default_queue_policy { max_queue_size: 100 default_timeout_microseconds: 5000 timeout_action: REJECT
                         allow_timeout_override: true }
}
instance_group [ { count: 2 kind: KIND_CPU } ]
"""

MODEL_IN = [TensorSpec("features", BY_KSERVE["FP32"], (-1, 32))]
MODEL_OUT = [TensorSpec("score", BY_KSERVE["FP32"], (-1, 1))]


def test_batching_policy_from_config():
    policy = batching_policy(parse_config_text(CONFIG, "test"))
    assert policy.max_batch_size == 16 and policy.dynamic
    assert policy.preferred_batch_sizes == (4, 8) and policy.target_rows == 8
    assert policy.max_queue_delay_s == pytest.approx(250e-6)
    assert policy.max_queue_size == 100
    assert policy.queue_timeout_s == pytest.approx(0.005) and policy.allow_timeout_override
    assert policy.instance_count == 2


def test_no_dynamic_batching_runs_requests_alone():
    policy = batching_policy(parse_config_text('name: "m" max_batch_size: 8', "test"))
    assert not policy.dynamic and policy.target_rows == 1


def test_preferred_batch_size_above_max_is_refused():
    config = parse_config_text('max_batch_size: 4 dynamic_batching { preferred_batch_size: 8 }', "test")
    with pytest.raises(ConfigError, match="preferred_batch_size 8"):
        batching_policy(config)


def test_parse_error_names_the_file():
    with pytest.raises(ConfigError, match="where.pbtxt"):
        parse_config_text("max_batch_size: [", "where.pbtxt")


def test_folder_name_must_match(tmp_path):
    (tmp_path / "risk").mkdir()
    (tmp_path / "risk" / "config.pbtxt").write_text('name: "other"')
    with pytest.raises(ConfigError, match="does not match the folder"):
        load_config(tmp_path / "risk")


def test_empty_config_is_completed_from_the_model():
    config = mc.ModelConfig(name="risk", max_batch_size=8)
    complete_io(config, MODEL_IN, MODEL_OUT)
    inputs, outputs = io_specs(config)
    assert inputs == MODEL_IN and outputs == MODEL_OUT
    assert list(config.input[0].dims) == [32]


@pytest.mark.parametrize("text, match", [
    ('max_batch_size: 8 input [{ name: "x" data_type: TYPE_FP32 dims: [32] }]', "not in the model"),
    ('max_batch_size: 8 input [{ name: "features" data_type: TYPE_INT64 dims: [32] }]', "TYPE_INT64"),
    ('max_batch_size: 8 input [{ name: "features" data_type: TYPE_FP32 dims: [31] }]', r"dims \[31\]"),
])
def test_config_that_contradicts_the_model_is_refused(text, match):
    with pytest.raises(ConfigError, match=match):
        complete_io(parse_config_text(text, "t"), MODEL_IN, MODEL_OUT)


def test_batching_needs_a_variable_first_dimension():
    fixed = [TensorSpec("features", BY_KSERVE["FP32"], (4, 32))]
    with pytest.raises(ConfigError, match="variable first dimension"):
        complete_io(mc.ModelConfig(name="m", max_batch_size=8), fixed, MODEL_OUT)


@pytest.mark.parametrize("policy, expected", [
    ("", [3]),
    ("version_policy { latest { num_versions: 2 } }", [2, 3]),
    ("version_policy { all {} }", [1, 2, 3]),
    ("version_policy { specific { versions: [1, 3] } }", [1, 3]),
])
def test_version_policy(policy, expected):
    assert select_versions(parse_config_text(policy, "t"), [3, 1, 2]) == expected


def test_specific_version_missing_is_an_error():
    with pytest.raises(ConfigError, match=r"missing versions \[4\]"):
        select_versions(parse_config_text("version_policy { specific { versions: [4] } }", "t"), [1])
