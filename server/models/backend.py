"""What the batcher needs from a backend: run one batch on one instance."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from .config import TensorSpec


class Backend(Protocol):
    """A loaded model version with `instance_count` independent instances.

    `run` is called from a worker thread, one call per instance at a time; it should release
    the GIL while it computes (ONNX Runtime does).
    """

    inputs: list[TensorSpec]  # full dims as in the model file
    outputs: list[TensorSpec]
    device: str  # "cpu" or "cuda:0"

    def run(self, instance: int, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...
