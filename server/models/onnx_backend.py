"""ONNX Runtime, in process: one InferenceSession per instance, built once at load, on the
CUDA provider when the instance kind and the installed onnxruntime allow, else the CPU."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .config import ConfigError, TensorSpec
from .datatypes import BY_ONNX
from .index_ranges import graph_limits

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(kind: str, device: str) -> list[str]:
    """Execution providers for an instance kind (KIND_CPU/GPU/AUTO) and the server's device
    preference (auto, cpu, cuda), chosen once per load."""
    available = ort.get_available_providers()
    want_gpu = device == "cuda" or kind == "KIND_GPU"
    if device == "cpu" or kind == "KIND_CPU":
        if want_gpu and kind == "KIND_GPU":
            raise ConfigError("instance_group kind KIND_GPU but the server runs with --device cpu")
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if want_gpu:
        raise ConfigError(
            f"a GPU was asked for but onnxruntime offers only {available}; install onnxruntime-gpu (README)"
        )
    return [CPU]


def _spec(arg) -> TensorSpec:
    if arg.type not in BY_ONNX:
        raise ConfigError(f"model tensor {arg.name!r} has type {arg.type}, which is not served")
    dims = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(arg.name, BY_ONNX[arg.type], dims)


def _inspect(model_path: Path):
    """The graph's index ranges, read before the sessions exist so the parsed graph and the
    sessions never hold memory together. A file onnx cannot parse (an ORT-format model, or
    garbage) gets no ranges here: the session build says what is wrong with it."""
    try:
        return graph_limits(model_path)
    except Exception as exc:  # noqa: BLE001 - inspection is an extra check, never the reason a load fails
        log.warning("model graph not inspected for index ranges",
                    extra={"model_path": str(model_path), "reason": f"{type(exc).__name__}: {exc}"})
        return {}, {}, []


class OnnxRuntimeBackend:
    text_strings = True  # string tensors in and out as str (api/tensors.py encodes them back to bytes)

    def __init__(
        self,
        model_path: Path,
        instance_count: int,
        providers: list[str],
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads burn the cores the gRPC loop needs on a small machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.index_ranges, self.dim_limits, self.shared_dims = _inspect(model_path)
        self._sessions = [
            ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
            for _ in range(max(instance_count, 1))
        ]
        first = self._sessions[0]
        self.inputs = [_spec(a) for a in first.get_inputs()]
        self.outputs = [_spec(a) for a in first.get_outputs()]
        self._output_names = [o.name for o in self.outputs]
        self.device = "cuda:0" if first.get_providers()[0] == CUDA else "cpu"
        log.info("onnxruntime session", extra={"model_path": str(model_path), "providers": first.get_providers(),
                                               "instances": len(self._sessions)})

    def run(self, instance: int, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._sessions[instance].run(self._output_names, feeds)
        return dict(zip(self._output_names, results))

    def close(self) -> None:
        self._sessions.clear()
