"""Which parts of config.pbtxt are served. Triton's schema has many more: anything set here
that is not served stops the load with a message naming each field, so nothing in a config is
accepted and then silently ignored (a response cache that never caches, priorities that never
reorder, a warm-up never run)."""
from __future__ import annotations

from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2 as mc

# per message type, the fields Hanzo acts on (a field absent here and set in a config is refused)
SERVED = {
    "ModelConfig": {"name", "platform", "backend", "version_policy", "max_batch_size", "input", "output",
                    "dynamic_batching", "instance_group", "default_model_filename", "parameters", "response_cache",
                    "model_warmup", "sequence_batching"},
    "ModelResponseCache": {"enable"},
    "ModelInput": {"name", "data_type", "format", "dims", "reshape"},
    "ModelOutput": {"name", "data_type", "dims", "reshape"},
    "ModelTensorReshape": {"shape"},
    "ModelWarmup": {"name", "batch_size", "inputs", "count"},
    "ModelWarmup.Input": {"data_type", "dims", "zero_data", "random_data", "input_data_file"},
    "ModelDynamicBatching": {"preferred_batch_size", "max_queue_delay_microseconds", "default_queue_policy",
                             "priority_levels", "default_priority_level"},
    "ModelSequenceBatching": {"direct", "oldest", "max_sequence_idle_microseconds", "control_input", "state"},
    "ModelSequenceBatching.StrategyDirect": {"max_queue_delay_microseconds"},
    "ModelSequenceBatching.StrategyOldest": {"max_candidate_sequences", "preferred_batch_size",
                                             "max_queue_delay_microseconds"},
    "ModelSequenceBatching.ControlInput": {"name", "control"},
    "ModelSequenceBatching.Control": {"kind", "int32_false_true", "fp32_false_true", "bool_false_true", "data_type"},
    "ModelSequenceBatching.State": {"input_name", "output_name", "data_type", "dims", "initial_state"},
    "ModelSequenceBatching.InitialState": {"data_type", "dims", "zero_data", "name"},
    "ModelQueuePolicy": {"timeout_action", "default_timeout_microseconds", "allow_timeout_override",
                         "max_queue_size"},
    "ModelInstanceGroup": {"name", "kind", "count"},
}
# config parameters { key: ... } Hanzo reads (models/version_build.py, version.py)
SERVED_PARAMETERS = {"intra_op_thread_count", "inter_op_thread_count", "execution", "inline_max_us",
                     "remote_triton_url", "remote_model_name", "artifacts", "max_sequences"}


def unserved_fields(config: mc.ModelConfig) -> list[str]:
    """Each field set in `config` that is not served, as a path (`dynamic_batching.priority_levels`,
    `input[0].reshape`), and each parameter key nothing reads."""
    found: list[str] = []
    _walk(config, "", found)
    found += [f'parameters["{key}"]' for key in sorted(config.parameters) if key not in SERVED_PARAMETERS]
    return found


def _walk(message: Message, prefix: str, found: list[str]) -> None:
    served = SERVED.get(message.DESCRIPTOR.full_name.removeprefix("inference."))
    for field, value in message.ListFields():  # only what the config sets
        path = f"{prefix}{field.name}"
        if served is not None and field.name not in served:
            found.append(path)
            continue
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:  # a map of messages: each value walked
            if field.message_type.fields_by_name["value"].message_type is not None:
                for key, item in value.items():
                    _walk(item, f"{path}[{key}].", found)
            continue
        if field.is_repeated:
            for i, item in enumerate(value):
                _walk(item, f"{path}[{i}].", found)
        elif field.message_type.full_name.removeprefix("inference.") in SERVED:
            _walk(value, f"{path}.", found)
