"""The server's lifecycle: listen (health NOT_SERVING), load and warm every model, report SERVING;
on stop report NOT_SERVING, let in-flight calls finish (within the grace period), retire the
models, exit."""
from __future__ import annotations

import asyncio
import gc
import logging
import socket
from pathlib import Path
from typing import Callable
from importlib.metadata import PackageNotFoundError, version as package_version

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from ..api import admin, commerce, kserve
from ..api.admission import Admission
from ..api.edge import Edge
from ..api.limits import RequestLimits
from ..api.services import add_service
from . import exposure
from .config import ServerConfig
from ..features.service import FeatureService
from ..features.tenancy import scoped
from ..api.latency import LatencyRecorder
from .metrics import ServerCollector, registry_for, serve_metrics
from ..api.kserve_http import KServeHttp
from ..api.shared_memory import SharedMemoryRegistry
from .triton_metrics import triton_model_metrics
from ..models.response_cache import ResponseCache
from ..models import ModelRepository, RepositoryOptions
from ..experiments.outcomes import OutcomeJoin
from ..experiments.runner import GateRunner
from ..models.config import ConfigError
from ..models.promotion import Promotions
from ..surfaces.fraud import FraudArtifacts, FraudScorer
from ..surfaces.customers import CustomerScorer
from ..surfaces.inventory import InventoryPlanner
from ..surfaces.pricing import PriceQuoter
from ..surfaces.recommend import RecommendArtifacts, Recommender
from ..surfaces.shadow import Shadow
from ..surfaces.search import COMPANIONS, SearchArtifacts, Searcher

log = logging.getLogger(__name__)

try:
    VERSION = package_version("hanzo")
except PackageNotFoundError:  # running from a source tree
    VERSION = "0+unknown"

SERVICES = (kserve.SERVICE, commerce.SERVICE, admin.SERVICE)


class HanzoServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.latency = LatencyRecorder()
        loaders = {"recommend": RecommendArtifacts.load, "search": SearchArtifacts.load, "fraud": FraudArtifacts.load}
        self.response_cache = ResponseCache(config.response_cache_bytes) if config.response_cache_bytes else None
        self.shared_memory = SharedMemoryRegistry(config.shared_memory_prefix)  # "" prefix: not served
        self.repository = ModelRepository(config.model_repo, RepositoryOptions(
            device=config.device, artifact_loaders=loaders, response_cache=self.response_cache))
        self.features = FeatureService(config.features)
        self.features.limits = config.limits
        # one budget for every surface's shadow copies
        self.shadow = Shadow(config.shadow, Path(config.features.data_dir) / "shadow")
        self.recommender = Recommender(self.repository, self.features, config.recommend, self.shadow,
                                       config.experiment)
        self.promotions = Promotions(self.repository, COMPANIONS)
        # outcomes joined to the lists Recommend and Search served (those they log), per version
        # and arm; with an experiment's gate on, the candidate promoted, stopped or rolled back
        experiment = config.experiment
        self.outcomes = OutcomeJoin(int(experiment.attribution_hours * 3_600_000), experiment.outcome_lists)
        self.features.listeners.append(self.outcomes.observe)
        self.recommender.on_shown = self.outcomes.shown
        self.gate: GateRunner | None = None
        if experiment.enabled and experiment.gate:
            self.gate = GateRunner("recommend", self.repository, self.promotions, self.outcomes,
                                   self.recommender.arm_latency, experiment)
            self.recommender.challenger = self.gate.challenger
        self._gate_task: asyncio.Task | None = None
        self.searcher = Searcher(self.repository, self.features, config.search)
        self.searcher.on_served = self.outcomes.shown
        self.fraud = FraudScorer(self.repository, self.features, config.fraud, self.shadow)
        self.features.listeners.append(self.fraud.labels.observe)  # chargebacks settle the scores
        self.pricing = PriceQuoter(self.features, config.pricing, shadow=self.shadow)
        self.features.listeners.append(self.pricing.outcomes.observe)  # purchases at a quoted price
        self.inventory = InventoryPlanner(config.inventory)
        self.customers = CustomerScorer(self.features, config.customers)
        self.port: int | None = None
        self._serving = False  # health and ServerReady: SERVING
        self._accepting = False  # the edge lets calls in: from SERVING until a drain ends
        self.admission = Admission(config.admission) if config.admission.enabled else None
        self.edge = Edge(self.latency, RequestLimits(config.limits), lambda: self._accepting, self.admission)
        # shadow copies work in the gaps between calls
        self.shadow.quiet, self.shadow.busy = self.edge.quiet, lambda: self.edge.in_flight > 0
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._poller: asyncio.Task | None = None
        self._stopped = asyncio.Event()
        self._metrics: asyncio.AbstractServer | None = None
        self._feed: asyncio.Task | None = None  # replicas: the other replicas' catalogue changes
        self._resender: asyncio.Task | None = None  # Redis mode: logged batches Redis has not got yet
        self.metrics_port: int | None = None
        self._http: KServeHttp | None = None
        self.http_port: int | None = None
        self.access = None  # api.access.Access, made as the port opens
        self.scopes: dict[str, str] = {}  # every registered method's declared scope

    def _drift_windows(self) -> dict:
        """(model, version) -> its drift window, for every surface that measures drift."""
        return {(model, version): window for model, windows in (
            ("fraud", self.fraud.drift), ("search", self.searcher.drift), ("recommend", self.recommender.drift))
            for version, window in windows.versions.items()}

    def serving(self) -> bool:
        return self._serving

    async def listen(self) -> int:
        """Bind the port and answer at once: health NOT_SERVING and UNAVAILABLE calls, not a
        refused connection, while the store opens and the models load. Returns the port; raises
        OSError naming the address when it cannot be bound."""
        limit = self.config.max_message_bytes
        options = [
            ("grpc.max_receive_message_length", limit),
            # answers are ours, and may outgrow the question (an ack's rejects, reflection's echo)
            ("grpc.max_send_message_length", 4 * limit),
            ("grpc.so_reuseport", 1 if self.config.reuse_port else 0),
        ]
        server = grpc.aio.server(options=options)
        self.access = access = exposure.access(self.config)
        scopes = self.scopes
        scopes.update(add_service(server, kserve.KServeServicer(self.repository, VERSION, self.serving, self.edge,
                                                                        self.config.control_mode, self.shared_memory),
                                  kserve.SERVICE, kserve.SCOPES, access, audited=kserve.AUDITED))
        scopes.update(add_service(server, commerce.CommerceServicer(
            self.edge, self.features, self.recommender, self.searcher, self.fraud, self.pricing, self.inventory,
            self.customers), commerce.SERVICE, commerce.SCOPES, access))
        scopes.update(add_service(server, admin.AdminServicer(
            self.latency, self.edge, self.forget, self._promotions(), self._gate_status), admin.SERVICE,
                                  admin.SCOPE, access, guard=True, audited=admin.AUDITED))
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        scopes.update(add_service(server, self._health, health_name, "health", access, guard=True))
        scopes.update(add_service(server, reflection.aio.ReflectionServicer(
            SERVICES + (health_name, reflection.SERVICE_NAME)), reflection.SERVICE_NAME, "reflection", access,
            guard=True))
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        tls = exposure.tls_files(self.config)  # one set of files for both ports
        credentials = exposure.checked(self.config, tls)
        address = f"{self.config.host}:{self.config.port}"
        if not self.config.reuse_port:
            _check_bindable(self.config.host, self.config.port)
        try:
            self.port = (server.add_insecure_port(address) if credentials is None
                         else server.add_secure_port(address, credentials))
        except RuntimeError:  # grpc's words for a taken port or an address this host does not have
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {address}: the port is taken or the address is not this machine's")
        await server.start()
        self._server = server
        if self.admission is not None:
            self.admission.start()
        log.info("listening", extra={"address": f"{self.config.host}:{self.port}", "version": VERSION})
        if self.config.metrics_port:
            registry = registry_for(ServerCollector(self.repository, self.latency, self.features, self.admission,
                                                    self.edge.late, self.outcomes,
                                                    self._drift_windows,
                                                    self.fraud.labels, self.pricing.outcomes,
                                                    self.config.metrics_names))
            triton = self.config.metrics_names == "triton"
            self._metrics = await serve_metrics(registry, self.config.host, self.config.metrics_port,
                                                exposure.metrics_tls(tls), exposure.metrics_check(self.config, access),
                                                (lambda: triton_model_metrics(self.repository)) if triton else None)
            self.metrics_port = self._metrics.sockets[0].getsockname()[1]
        if self.config.http_port:
            self._http = KServeHttp(kserve.KServeServicer(self.repository, VERSION, self.serving, None,
                                                          self.config.control_mode, self.shared_memory), self.latency,
                                    access, limit, self.edge.limits)
            self.http_port = await self._http.start(self.config.host, self.config.http_port,
                                                    exposure.metrics_tls(tls))
            log.info("listening (HTTP)", extra={"address": f"{self.config.host}:{self.http_port}"})
        return self.port

    async def load(self, announce: Callable[[], None] | None = None) -> None:
        """Open the feature store, load and warm every model, then report SERVING; `announce`
        runs just before health says so (what a watcher of health may then read is written)."""
        await asyncio.to_thread(self.features.open)
        if self.features.feed is not None:
            self._feed = asyncio.get_running_loop().create_task(self.features.follow_catalog())
        if self.features.redis is not None:
            self._resender = asyncio.get_running_loop().create_task(self.features.resend_unsent())
        await self.repository.load_all(self.config.models_at_start)
        await self.searcher.start()
        # What exists now (models, sessions, modules) lives as long as the server: keep it out
        # of every later garbage collection pass.
        gc.collect()
        gc.freeze()
        if announce is not None:
            announce()
        self._serving = self._accepting = True
        self.features.retain_if_due()  # events past [features] retention_days go (in the background)
        # registered before the first status is set, so a load in between is not missed
        self.repository.on_readiness(self._readiness_changed)
        ready = self.repository.is_ready()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING if ready else
                               health_pb2.HealthCheckResponse.NOT_SERVING)
        if not ready:
            log.error("not ready: a model has no version that loads (RepositoryIndex says why); health says "
                      "NOT_SERVING until it loads")
        if self.config.control_mode == "poll":
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        if self.gate is not None:
            self._gate_task = asyncio.get_running_loop().create_task(self.gate.run())
        log.info("serving", extra={"models": [f"{e.name}:{e.version}:{e.state}" for e in self.repository.index()]})

    async def _readiness_changed(self, ready: bool) -> None:
        """Health agrees with ServerReady: NOT_SERVING while a model has no version that loads."""
        if self._serving:  # never SERVING while starting or draining
            await self._set_health(health_pb2.HealthCheckResponse.SERVING if ready else
                                   health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _set_health(self, status) -> None:
        for name in ("",) + SERVICES:
            await self._health.set(name, status)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_seconds or 15.0)  # Triton's --repository-poll-secs default
            try:
                await self.repository.poll()
            except Exception:
                log.exception("repository poll failed")

    def _gate_status(self, model: str) -> dict | None:
        return self.gate.status() if self.gate is not None and self.gate.model == model else None

    def _promotions(self) -> list[Promotions]:
        """The repository's models, and pricing's demand model where it is a folder of versions
        (promoted by its folder's name, which no repository model may share)."""
        promotions = [self.promotions]
        versions = self.pricing.versions
        if versions is not None:
            if versions.name in self.repository.discover():
                raise ConfigError(f"[pricing] model {versions.model_dir}: the repository has a model named "
                                  f"{versions.name!r} too; name the folder of demand model versions differently")
            promotions.append(Promotions(versions))
        return promotions

    async def forget(self, merchant: str, user: str) -> dict:
        """Erase a shopper (Admin Forget): what the surfaces hold back for the store is written
        first, so none of the shopper's served events land after the rebuild."""
        for served in (self.recommender.shown, self.searcher.log, self.fraud.log):
            if served is not None:
                await served.flush()
        receipt = await self.features.forget(merchant, user)
        self.fraud.forget_answers()
        self.outcomes.forget(scoped(merchant, user))
        return receipt

    async def stop(self, grace: float | None = None, delay: float | None = None, release_port: bool = True) -> None:
        """Drain. Health says NOT_SERVING at once, while calls are still served for `delay`
        seconds (drain_delay_seconds), so load balancers move away first; then every new call is
        refused UNAVAILABLE, and calls in flight get up to `grace` seconds to finish before the
        models and the store close. `release_port=False` leaves the listening socket to the
        process's exit: gRPC's own shutdown cancels calls that reached the server in the moment
        it begins (the client sees CANCELLED, which no retry policy retries), where a socket
        closed by the exit makes them UNAVAILABLE."""
        if self._server is None:
            return
        grace = self.config.grace_seconds if grace is None else grace
        delay = self.config.drain_delay_seconds if delay is None else delay
        log.info("draining", extra={"grace_seconds": grace, "delay_seconds": delay})
        self._serving = False
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._poller:
            self._poller.cancel()
        if self._gate_task is not None:
            self._gate_task.cancel()
        if delay > 0 and self._accepting:
            await asyncio.sleep(delay)
        self._accepting = False
        if self.admission is not None:
            self.admission.stop()
        if not await self.edge.wait_idle(grace):
            # past the grace period: cancelled, so that nothing runs while the store closes
            cancelled = await self.edge.cancel_in_flight()
            log.warning("calls cancelled after the grace period", extra={"calls": cancelled})
        if self._feed is not None:
            self._feed.cancel()
        if self._resender is not None:
            self._resender.cancel()
        if self._http is not None:  # its calls finish (or are cut) before the models they use close
            await self._http.stop()
        await self.recommender.close()
        await self.searcher.close()
        await self.fraud.close()
        await self.shadow.close()
        try:  # queued model requests finish first, within what is left of a sensible bound
            await asyncio.wait_for(self.repository.close(), max(grace, 1.0))
        except asyncio.TimeoutError:
            log.warning("models still busy after the grace period; closing the store regardless")
        await self.features.aclose()
        self.shared_memory.close()
        if self._metrics is not None:
            self._metrics.close()
        if release_port:
            await self._server.stop(0)
        if self.access is not None:  # after the last call that could be an admin action
            await asyncio.to_thread(self.access.audit.close)
        self._server = None
        self._stopped.set()
        log.info("stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _check_bindable(host: str, port: int) -> None:
    """An OSError in plain words for a port someone else holds (gRPC's own report of it is a
    log line and a bare failure)."""
    if port == 0:
        return
    bare = host.strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bare, port))
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror.lower()}") from None
