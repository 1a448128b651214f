"""The KServe V2 HTTP/REST protocol, as Triton serves it, on a port of its own (aiohttp on the
serving loop): health, server and model metadata, model config, statistics, the repository's
index, load and unload, and inference with JSON tensors and Triton's binary tensor data.

Each endpoint answers through the gRPC servicer's own methods (api/kserve.py), so both ports
check and answer alike; this module only translates. Errors are `{"error": "..."}` with the
status Triton gives (400 bad request, 404 not found, 503 unavailable, 501 not served). The port
follows the gRPC port's access rules: the same API keys and scopes (`Authorization: Bearer`),
the same TLS files, the same audit of repository changes."""
from __future__ import annotations

import base64

import logging
import time
from typing import Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from tritonclient.grpc import service_pb2 as pb

from ..models.errors import HanzoError, InvalidArgument, ResourceExhausted
from .edge import cut_message
from .http_tensors import HEADER_LENGTH, parse_request, render_response
from .kserve import AUDITED, SCOPES, KServeServicer
from .latency import LatencyRecorder
from .limits import RequestLimits
from .proto_json import to_json

log = logging.getLogger(__name__)

HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404, "UNAVAILABLE": 503,
               "UNIMPLEMENTED": 501, "RESOURCE_EXHAUSTED": 429, "DEADLINE_EXCEEDED": 504, "PERMISSION_DENIED": 403,
               "UNAUTHENTICATED": 401, "INTERNAL": 500}
_VERSION = r"/versions/{version:[0-9]+}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    """Cut as the gRPC edge cuts a status message."""
    return web.Response(status=status, body=orjson.dumps({"error": cut_message(message)}),
                        content_type="application/json",
                        headers=headers)


def _json(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


class _QuietPayloadErrors(logging.Filter):
    """aiohttp logs a traceback when it drains a body that failed to decompress after the
    handler answered 400: a caller's error, which must not fill the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], RequestPayloadError))


class KServeHttp:
    def __init__(self, servicer: KServeServicer, latency: LatencyRecorder, access=None,
                 max_body_bytes: int = 64 << 20, limits: RequestLimits | None = None, max_in_flight: int = 256) -> None:
        self.servicer = servicer  # unwrapped: this module is its own edge
        self.latency = latency
        self.access = access  # api.access.Access, or None (tests)
        self.max_body_bytes = max_body_bytes
        self.limits = limits  # the gRPC edge's field limits, applied to the request each body stands for
        # inferences at once: each holds its body and its tensors; past it, refused at once
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._runner: web.AppRunner | None = None
        self._methods: dict[web.AbstractRoute, str] = {}  # route -> the gRPC method it stands for

    # ------------------------------------------------------------------ the application

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=[self._edge])
        routes = [
            ("GET", "/v2/health/live", "ServerLive", self.live), ("GET", "/v2/health/ready", "ServerReady", self.ready),
            ("GET", "/v2", "ServerMetadata", self.server_metadata),
            ("GET", "/v2/models/stats", "ModelStatistics", self.statistics),
            ("POST", "/v2/repository/index", "RepositoryIndex", self.index),
            ("POST", "/v2/repository/models/{model}/load", "RepositoryModelLoad", self.load),
            ("POST", "/v2/repository/models/{model}/unload", "RepositoryModelUnload", self.unload),
            ("GET", "/v2/systemsharedmemory/status", "SystemSharedMemoryStatus", self.shm_status),
            ("GET", "/v2/systemsharedmemory/region/{region}/status", "SystemSharedMemoryStatus", self.shm_status),
            ("POST", "/v2/systemsharedmemory/region/{region}/register", "SystemSharedMemoryRegister",
             self.shm_register),
            ("POST", "/v2/systemsharedmemory/unregister", "SystemSharedMemoryUnregister", self.shm_unregister),
            ("POST", "/v2/systemsharedmemory/region/{region}/unregister", "SystemSharedMemoryUnregister",
             self.shm_unregister),
        ]
        for suffix in ("", _VERSION):
            base = "/v2/models/{model}" + suffix
            routes += [("GET", base, "ModelMetadata", self.model_metadata),
                       ("GET", base + "/ready", "ModelReady", self.model_ready),
                       ("GET", base + "/config", "ModelConfig", self.model_config),
                       ("GET", base + "/stats", "ModelStatistics", self.statistics),
                       ("POST", base + "/infer", "ModelInfer", self.infer)]
        for method, path, name, handler in routes:
            self._methods[app.router.add_route(method, path, handler)] = name
        return app

    async def start(self, host: str, port: int, ssl_context=None) -> int:
        """Bind and serve; returns the port (0 asks for a free one)."""
        logging.getLogger("aiohttp.server").addFilter(_QuietPayloadErrors())
        self._runner = web.AppRunner(self.application(), access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise OSError(f"cannot listen on {host}:{port} (HTTP): the port is taken or the address is not this "
                          f"machine's") from None
        return site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _edge(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Credentials, errors as Triton writes them, the call's time."""
        started = time.perf_counter_ns()
        method = self._methods.get(request.match_info.route, "")
        code = "OK"
        try:
            refused = self._refusal(method, request) if method else None
            if refused is not None:
                response, code = refused
            else:
                response = await handler(request)
        except HanzoError as exc:
            response, code = _error(HTTP_STATUS.get(exc.code, 400), exc.message), exc.code
            self._audit(method, request, exc.code, exc.message)
        except web.HTTPException as exc:  # aiohttp's own: no route, wrong method, body too large
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            response, code = _error(exc.status, exc.reason, allow), f"HTTP_{exc.status}"
        except Exception:  # a bug must not take the port down, nor show its insides
            log.exception("HTTP call failed", extra={"method": method})
            response, code = _error(500, "internal error"), "INTERNAL"
        else:
            if refused is None:
                self._audit(method, request, "OK")
        if method:
            self.latency.record(f"HTTP {method}", time.perf_counter_ns() - started, code)
        return response

    def _refusal(self, method: str, request: web.Request) -> tuple[web.Response, str] | None:
        if self.access is None:
            return None
        headers = {k.lower(): v for k, v in request.headers.items()}
        key, refused = self.access.refusal(SCOPES[method], headers, lambda: _identities(request))
        request["caller"] = key
        if refused is None:
            return None
        code, reason = refused
        if method in AUDITED and self.access.audit is not None:
            unrecorded = self.access._refusal_unrecorded()  # refusals share the gRPC port's budget
            if unrecorded is not None:
                extra = {"refusals_not_recorded_before": unrecorded} if unrecorded else {}
                self._audit(method, request, code.name, reason, **extra)
        return _error(HTTP_STATUS.get(code.name, 403), reason), code.name

    def _audit(self, method: str, request: web.Request, result: str, reason: str = "", **extra) -> None:
        audit = getattr(self.access, "audit", None)
        if audit is None or method not in AUDITED:
            return
        key = request.get("caller")
        who = key.id if key is not None else f"anonymous from {request.remote}"
        detail = {"reason": reason} if reason else {}
        audit.record(who, f"HTTP {method}", result, model=request.match_info.get("model", "")[:256], **detail,
                     **extra)

    # ------------------------------------------------------------------ endpoints

    async def live(self, request: web.Request) -> web.Response:
        live = await self.servicer.ServerLive(pb.ServerLiveRequest(), None)
        return web.Response(status=200 if live.live else 400)

    async def ready(self, request: web.Request) -> web.Response:
        ready = await self.servicer.ServerReady(pb.ServerReadyRequest(), None)
        return web.Response(status=200 if ready.ready else 400)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return _json(to_json(await self.servicer.ServerMetadata(pb.ServerMetadataRequest(), None)))

    async def model_metadata(self, request: web.Request) -> web.Response:
        name, version = _model(request)
        return _json(to_json(await self.servicer.ModelMetadata(pb.ModelMetadataRequest(name=name, version=version),
                                                               None)))

    async def model_ready(self, request: web.Request) -> web.Response:
        name, version = _model(request)
        self.servicer.repository.get(name, version)  # 404 for a model or version not here
        ready = await self.servicer.ModelReady(pb.ModelReadyRequest(name=name, version=version), None)
        return web.Response(status=200) if ready.ready else _error(400, "Model version not ready")

    async def model_config(self, request: web.Request) -> web.Response:
        name, version = _model(request)
        answer = await self.servicer.ModelConfig(pb.ModelConfigRequest(name=name, version=version), None)
        return _json(to_json(answer.config))

    async def statistics(self, request: web.Request) -> web.Response:
        name, version = _model(request)
        answer = await self.servicer.ModelStatistics(pb.ModelStatisticsRequest(name=name, version=version), None)
        return _json(to_json(answer))

    async def index(self, request: web.Request) -> web.Response:
        body = await _optional_json(request)
        ready = body.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidArgument("ready", "Invalid value for 'ready': expected a boolean")
        answer = await self.servicer.RepositoryIndex(pb.RepositoryIndexRequest(ready=ready), None)
        return _json([{k: v for k, v in to_json(m).items() if v != ""} for m in answer.models])

    async def load(self, request: web.Request) -> web.Response:
        body = await _optional_json(request)
        message = pb.RepositoryModelLoadRequest(model_name=request.match_info["model"])
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidArgument("parameters", "must be a JSON object")
        for key, value in parameters.items():  # checked by the gRPC method
            if len(key) > 1024:
                raise InvalidArgument(f"parameters[{key[:64]}...]", "a key longer than 1024 characters")
            if key.startswith("file:"):  # the file's bytes, base64 in JSON (Triton's HTTP form)
                message.parameters[key].bytes_param = _base64(key, value)
            else:
                message.parameters[key].string_param = value if isinstance(value, str) else ""
        await self.servicer.RepositoryModelLoad(message, None)
        return web.Response(status=200, content_type="application/json")

    async def unload(self, request: web.Request) -> web.Response:
        await _optional_json(request)  # unload_dependents: there are no dependents to unload
        await self.servicer.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(
            model_name=request.match_info["model"]), None)
        return web.Response(status=200, content_type="application/json")

    async def shm_status(self, request: web.Request) -> web.Response:
        answer = await self.servicer.SystemSharedMemoryStatus(pb.SystemSharedMemoryStatusRequest(
            name=request.match_info.get("region", "")), None)
        return _json([to_json(status) for _, status in sorted(answer.regions.items())])

    async def shm_register(self, request: web.Request) -> web.Response:
        body = await _optional_json(request)
        key, offset, size = body.get("key"), body.get("offset", 0), body.get("byte_size")
        if not isinstance(key, str) or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 63
                                                for v in (offset, size)):
            raise InvalidArgument("body", "must be {\"key\": string, \"offset\": integer, \"byte_size\": integer}")
        await self.servicer.SystemSharedMemoryRegister(pb.SystemSharedMemoryRegisterRequest(
            name=request.match_info["region"], key=key, offset=offset, byte_size=size), None)
        return web.Response(status=200, content_type="application/json")

    async def shm_unregister(self, request: web.Request) -> web.Response:
        await self.servicer.SystemSharedMemoryUnregister(pb.SystemSharedMemoryUnregisterRequest(
            name=request.match_info.get("region", "")), None)
        return web.Response(status=200, content_type="application/json")

    async def infer(self, request: web.Request) -> web.Response:
        name, version = _model(request)
        header = request.headers.get(HEADER_LENGTH)
        try:
            length = int(header) if header is not None else None
        except ValueError:
            raise InvalidArgument(HEADER_LENGTH, f"unable to parse {header!r} as an integer") from None
        if self.in_flight >= self.max_in_flight:
            raise ResourceExhausted(f"{self.in_flight} HTTP inferences in flight, the most this port takes at once: "
                                    f"retry with backoff")
        self.in_flight += 1
        try:
            message, as_binary = parse_request(await _body(request), length, name, version)
            if self.limits is not None:
                self.limits.check(message)
            answer = await self.servicer.ModelInfer(message, None)
        finally:
            self.in_flight -= 1
        body, json_length = render_response(answer, as_binary, message)
        if json_length is None:
            response = web.Response(body=body, content_type="application/json")
        else:
            response = web.Response(body=body, content_type="application/octet-stream",
                                    headers={HEADER_LENGTH: str(json_length)})
        if request.headers.get("Accept-Encoding"):
            response.enable_compression()  # gzip or deflate (zlib), as the client accepts
        return response


def _model(request: web.Request) -> tuple[str, str]:
    return request.match_info.get("model", ""), request.match_info.get("version", "")


async def _body(request: web.Request) -> bytes:
    """The request's body, decompressed; a body that does not decompress or arrives cut short
    is the caller's error."""
    try:
        return await request.read()
    except RequestPayloadError as exc:
        raise InvalidArgument("body", f"could not be read ({type(exc).__name__}): check Content-Encoding and "
                                      f"Content-Length") from None


async def _optional_json(request: web.Request) -> dict:
    body = await _body(request)
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument("body", f"failed to parse the request JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument("body", "must be a JSON object")
    return data


def _identities(request: web.Request) -> list[str]:
    """A verified client certificate's names (mutual TLS): subject alternative names, then the
    common name."""
    cert = request.transport.get_extra_info("peercert") if request.transport is not None else None
    if not cert:
        return []
    names = [value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "URI", "email")]
    names += [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    return names


def _base64(key: str, value) -> bytes:
    try:
        if not isinstance(value, str):
            raise ValueError
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise InvalidArgument(f'parameters["{key}"]', "must be the file's content, base64 encoded") from None
