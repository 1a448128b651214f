"""The KServe V2 / Triton gRPC protocol over the model repository, on tritonclient's own
generated servicer (a second copy of those protos would clash in the protobuf pool)."""
from __future__ import annotations

from typing import Callable

from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from ..models.errors import FailedPrecondition, HanzoError, InvalidArgument, Unavailable, Unimplemented
from ..models.repository import READY, ModelRepository
from ..models.statistics import Duration, ModelStatistics
from ..models.version import ModelVersion
from .edge import Edge, deadline_of
from .kserve_stream import stream_answers
from .request_parameters import scheduling
from .shared_memory import SharedMemoryRegistry
from .tensors import decode_inputs, encode_response, requested_outputs

SERVICE = "inference.GRPCInferenceService"
SERVER_NAME = "hanzo"
EXTENSIONS = ["model_repository", "model_configuration", "statistics", "schedule_policy", "binary_tensor_data"]

_SERVED = ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelConfig", "ModelInfer",
           "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
           "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister"]
_NOT_SERVED = ["CudaSharedMemoryStatus", "CudaSharedMemoryRegister",
               "CudaSharedMemoryUnregister", "TraceSetting", "LogSettings"]

# The scope each method needs (api/access.py); the repository's changes are audited.
SCOPES = {"ServerLive": "health", "ServerReady": "health", "ModelReady": "infer", "ServerMetadata": "infer",
          "ModelMetadata": "infer", "ModelConfig": "infer", "ModelInfer": "infer", "ModelStatistics": "infer",
          "ModelStreamInfer": "infer", "RepositoryIndex": "admin", "RepositoryModelLoad": "admin",
          "RepositoryModelUnload": "admin", "SystemSharedMemoryStatus": "infer", "SystemSharedMemoryRegister": "infer",
          "SystemSharedMemoryUnregister": "infer", "CudaSharedMemoryStatus": "infer",
          "CudaSharedMemoryRegister": "infer", "CudaSharedMemoryUnregister": "infer", "TraceSetting": "admin",
          "LogSettings": "admin"}
AUDITED = frozenset({"RepositoryModelLoad", "RepositoryModelUnload", "TraceSetting", "LogSettings"})


def _duration(target, source: Duration) -> None:
    target.count = source.count
    target.ns = source.ns


def _statistics(version: ModelVersion) -> pb.ModelStatistics:
    s: ModelStatistics = version.stats
    out = pb.ModelStatistics(name=version.name, version=version.version_str, last_inference=s.last_inference_ms,
                             inference_count=s.inference_count, execution_count=s.execution_count)
    stats = out.inference_stats
    for name in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit",
                 "cache_miss"):
        _duration(getattr(stats, name), getattr(s, name))
    for size in sorted(s.batches):
        batch = out.batch_stats.add(batch_size=size)
        durations = s.batches[size]
        for name in ("compute_input", "compute_infer", "compute_output"):
            _duration(getattr(batch, name), getattr(durations, name))
    return out


class KServeServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, repository: ModelRepository, version: str, serving: Callable[[], bool],
                 edge: Edge | None, control_mode: str = "explicit",
                 shm: SharedMemoryRegistry | None = None) -> None:
        """`edge` None: the methods stay plain coroutines taking a context of None (the HTTP
        port's, api/kserve_http.py, which is its own edge). `control_mode`: Triton's
        --model-control-mode; loads and unloads are called for only in explicit."""
        self._repo = repository
        self._control_mode = control_mode
        self._shm = shm if shm is not None else SharedMemoryRegistry()  # none: shared memory off
        self._version = version
        self._serving = serving  # False while starting or draining
        # a stream is its own edge: each of its requests is checked and timed (api/kserve_stream.py)
        self._stream_limits = edge.limits if edge is not None else None
        self._stream_latency = edge.latency if edge is not None else None
        if edge is not None:  # metadata and health answer while starting and draining; inference does not
            edge.wrap_servicer(self, SERVICE, ["ModelInfer"])
            edge.wrap_servicer(self, SERVICE, [m for m in _SERVED + _NOT_SERVED if m != "ModelInfer"], gated=False)

    @property
    def repository(self) -> ModelRepository:
        return self._repo

    # ------------------------------------------------------------------ health and metadata

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self._serving() and self._repo.is_ready())

    async def ModelReady(self, request, context):
        try:
            self._repo.get(request.name, request.version)
        except HanzoError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self._serving())

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self._version, extensions=EXTENSIONS)

    async def ModelMetadata(self, request, context):
        version = self._repo.get(request.name, request.version)
        response = pb.ModelMetadataResponse(
            name=version.name, platform="onnxruntime_onnx",
            versions=[v.version_str for v in self._repo.ready_versions(version.name)])
        for specs, target in ((version.inputs, response.inputs), (version.outputs, response.outputs)):
            for spec in specs:
                target.add(name=spec.name, datatype=spec.datatype.kserve, shape=list(spec.dims))
        return response

    async def ModelConfig(self, request, context):
        version = self._repo.get(request.name, request.version)
        return pb.ModelConfigResponse(config=version.config)

    # ------------------------------------------------------------------ inference

    async def ModelInfer(self, request, context):
        return await self.infer(request, deadline_of(context) if context is not None else None)

    async def infer(self, request: pb.ModelInferRequest, deadline: float | None) -> pb.ModelInferResponse:
        """One inference, as ModelInfer and each request of a ModelStreamInfer answer it."""
        if not self._serving():
            raise Unavailable("the server is not serving (starting or draining)")
        version = self._repo.get(request.model_name, request.model_version)
        tensors = decode_inputs(request, version, self._shm)
        names = requested_outputs(request, version)
        asked = scheduling(request)
        outputs = await version.infer(tensors, deadline, asked.queue_timeout_s, asked.sequence, asked.priority)
        return encode_response(request, version, names, outputs, self._shm)

    async def ModelStreamInfer(self, request_iterator, context):
        """Requests in, answers out on one stream (api/kserve_stream.py)."""
        async for answer in stream_answers(self, request_iterator, deadline_of(context), self._stream_limits,
                                           self._stream_latency):
            yield answer

    # ------------------------------------------------------------------ statistics and repository

    async def ModelStatistics(self, request, context):
        if request.name:
            versions = ([self._repo.get(request.name, request.version)] if request.version
                        else self._repo.ready_versions(request.name))
            if not versions:
                self._repo.get(request.name)  # raises NOT_FOUND / UNAVAILABLE with the reason
        else:
            versions = [v for name in self._repo.names() for v in self._repo.ready_versions(name)]
        return pb.ModelStatisticsResponse(model_stats=[_statistics(v) for v in versions])

    async def RepositoryIndex(self, request, context):
        response = pb.RepositoryIndexResponse()
        for entry in self._repo.index():
            if request.ready and entry.state != READY:
                continue
            response.models.add(name=entry.name, version=entry.version, state=entry.state, reason=entry.reason)
        return response

    def _explicit(self) -> None:
        if self._control_mode == "poll":  # Triton's words
            raise FailedPrecondition("explicit model load / unload is not allowed if polling is enabled "
                                     "(--model-control-mode poll)")
        if self._control_mode == "none":
            raise FailedPrecondition("explicit model load / unload is not allowed with --model-control-mode none")

    async def RepositoryModelLoad(self, request, context):
        self._explicit()
        config, files = None, {}
        for key in request.parameters:  # Triton's: a `config` (JSON) and `file:<version>/<name>` overrides
            value = request.parameters[key]
            if key.startswith("file:"):
                if value.WhichOneof("parameter_choice") != "bytes_param":
                    raise InvalidArgument(f'parameters["{key[:200]}"]', "must be a bytes parameter (the file's content)")
                files[key] = value.bytes_param
            elif key == "config":
                config = value.string_param
            else:
                raise InvalidArgument(f'parameters["{key[:200]}"]', "is not a load parameter (Triton's are 'config' "
                                                                    "and 'file:<version>/<name>')")
        # A failed load raises FAILED_PRECONDITION with each reason (ModelRepository.load);
        # a name that is no model folder, NOT_FOUND; an override that does not parse, INVALID_ARGUMENT.
        await self._repo.load(request.model_name, config, files)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        self._explicit()
        await self._repo.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # ------------------------------------------------------------------ system shared memory

    async def SystemSharedMemoryRegister(self, request, context):
        self._shm.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(self, request, context):
        self._shm.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def SystemSharedMemoryStatus(self, request, context):
        response = pb.SystemSharedMemoryStatusResponse()
        for region in self._shm.status(request.name):
            response.regions[region.name].CopyFrom(pb.SystemSharedMemoryStatusResponse.RegionStatus(
                name=region.name, key=region.key, offset=region.offset, byte_size=region.byte_size))
        return response

    # ------------------------------------------------------------------ not served

    async def _not_served(self, request, context):
        raise Unimplemented("this part of the KServe/Triton protocol is not served by Hanzo")

    CudaSharedMemoryStatus = CudaSharedMemoryRegister = _not_served
    CudaSharedMemoryUnregister = TraceSetting = LogSettings = _not_served
