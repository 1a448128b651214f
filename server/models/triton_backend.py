"""A model that runs on a remote Triton Inference Server instead of in-process ONNX Runtime,
chosen per model in its config.pbtxt:

    parameters { key: "remote_triton_url" value { string_value: "triton-host:8001" } }
    parameters { key: "remote_model_name" value { string_value: "..." } }   # default: the same name

Hanzo's batcher still forms the batches (the remote server may batch again across Hanzo
replicas); each batch is one ModelInfer over tritonclient's asyncio client on the serving
loop, so a batch in flight holds no thread. The tensor layout comes from the remote model's
metadata, checked against the local model file when there is one. Warm-up (on the loading
thread) uses the synchronous client."""
from __future__ import annotations

import logging

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient

from .config import ConfigError, TensorSpec
from .datatypes import BY_KSERVE

log = logging.getLogger(__name__)

URL_PARAMETER = "remote_triton_url"
NAME_PARAMETER = "remote_model_name"


def _specs(tensors) -> list[TensorSpec]:
    out = []
    for tensor in tensors:
        if tensor.datatype not in BY_KSERVE:
            raise ConfigError(f"remote tensor {tensor.name!r} has type {tensor.datatype}, which is not served")
        out.append(TensorSpec(tensor.name, BY_KSERVE[tensor.datatype], tuple(int(d) for d in tensor.shape)))
    return out


class RemoteTritonBackend:
    def __init__(self, url: str, model: str, version: str = "", instance_count: int = 1,
                 timeout_s: float = 30.0) -> None:
        self.url, self.model, self.version = url, model, version
        self.timeout_s = timeout_s
        self.device = f"triton://{url}"
        self._sync = grpcclient.InferenceServerClient(url)
        try:
            if not self._sync.is_model_ready(model, version):
                raise ConfigError(f"remote model {model!r} is not ready on the Triton server at {url}")
            meta = self._sync.get_model_metadata(model, version)
        except grpcclient.InferenceServerException as exc:
            raise ConfigError(f"the Triton server at {url} did not answer for {model!r}: {exc.message()}") from exc
        self.inputs = _specs(meta.inputs)
        self.outputs = _specs(meta.outputs)
        self._output_names = [o.name for o in self.outputs]
        self._aio: aioclient.InferenceServerClient | None = None
        log.info("remote triton model", extra={"url": url, "model": model, "inputs": [i.name for i in self.inputs]})

    def _request(self, feeds: dict[str, np.ndarray], module):
        inputs = []
        for spec in self.inputs:
            value = np.ascontiguousarray(feeds[spec.name])
            tensor = module.InferInput(spec.name, list(value.shape), spec.datatype.kserve)
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        outputs = [module.InferRequestedOutput(name) for name in self._output_names]
        return inputs, outputs

    def run(self, instance: int, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs, outputs = self._request(feeds, grpcclient)
        result = self._sync.infer(self.model, inputs, model_version=self.version, outputs=outputs,
                                  client_timeout=self.timeout_s)
        return {name: result.as_numpy(name) for name in self._output_names}

    async def run_async(self, instance: int, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._aio is None:  # made on the serving loop, which it belongs to
            self._aio = aioclient.InferenceServerClient(self.url)
        inputs, outputs = self._request(feeds, aioclient)
        result = await self._aio.infer(self.model, inputs, model_version=self.version, outputs=outputs,
                                       client_timeout=self.timeout_s)
        return {name: result.as_numpy(name) for name in self._output_names}

    def close(self) -> None:
        self._sync.close()
        # the asyncio client closes with its loop's channel; dropping it is enough here
        self._aio = None
