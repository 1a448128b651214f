"""The serving layer: a Triton-layout model repository, a dynamic batcher per model version,
and the backends that run batches (ONNX Runtime in-process, CPU or CUDA).

Surfaces see only `ModelRepository.get(name).infer(inputs, deadline)`.
"""
from .repository import ModelRepository, RepositoryOptions
from .version import ModelVersion

__all__ = ["ModelRepository", "RepositoryOptions", "ModelVersion"]
