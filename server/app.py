"""Server composition: ``build_server`` wires things (tests bind port 0); ``serve`` runs until
SIGTERM/SIGINT, then drains: health NOT_SERVING, in-flight work finishes within the grace
period, new calls get UNAVAILABLE, exit status 0."""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import signal
import sys
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.admin import ModelsService
from tagger import ArtifactError
from server.auth import AdminAuth
from server.corpora import CorpusStore
from server.jobs import JobManager
from server.metrics import Metrics
from server.registry import ModelRegistry
from server.service import TaggerService
from server.settings import ServerSettings
from server.store import ModelStore
from server.training import TrainingService
from tagger_proto.v1 import tagger_pb2 as pb
from tagger_proto.v1 import tagger_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["Tagger"].full_name  # "tagger.v1.Tagger"
log = logging.getLogger("tagger.server")


@dataclass
class RunningServer:
    server: grpc.aio.Server
    service: TaggerService
    health: health.aio.HealthServicer
    port: int
    metrics: Metrics
    metrics_port: int | None = None
    jobs: JobManager | None = None

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE):
            await self.health.set(name, status)

    async def attach(self, registry: ModelRegistry) -> None:
        """Start serving ``registry``'s models; health turns SERVING."""
        self.service.attach(registry)
        await self.set_serving(True)

    async def stop(self, grace: float, drain: float = 0.0) -> None:
        """NOT_SERVING; after ``drain`` seconds refuse new calls; give in-flight ones ``grace``."""
        await self.set_serving(False)
        if drain:
            await asyncio.sleep(drain)
        await self.server.stop(grace)
        await self.service.close()
        if self.jobs is not None:
            await self.jobs.close()


def _credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    pair = [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())]
    if settings.tls_client_ca is not None:
        return grpc.ssl_server_credentials(pair, root_certificates=settings.tls_client_ca.read_bytes(),
                                           require_client_auth=True)
    return grpc.ssl_server_credentials(pair)


def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None


async def build_server(settings: ServerSettings, registry: ModelRegistry | None = None,
                       metrics: Metrics | None = None, store: ModelStore | None = None) -> RunningServer:
    """Create, bind and start the server. Health reports NOT_SERVING (and Tag answers
    UNAVAILABLE) until a registry is attached, here or later with ``attach``."""
    metrics = metrics or Metrics()
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", settings.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", settings.keepalive_timeout_ms),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    auth = AdminAuth(_secret(settings.admin_token), settings.host, _secret(settings.tagging_token))
    server = grpc.aio.server(options=options, interceptors=[auth])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service = TaggerService(settings, metrics)
    pb_grpc.add_TaggerServicer_to_server(service, server)
    services = [SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]
    jobs = None
    if store is not None:
        models = ModelsService(store, service)
        pb_grpc.add_ModelsServicer_to_server(models, server)
        corpora = CorpusStore(store.root.parent, settings.max_corpus_bytes, settings.max_corpora)
        corpora.clean()

        async def on_finished(name: str, version: str, dev_score: float) -> bool:
            return await models.activate_if_better(name, version, dev_score, settings.auto_activate)

        jobs = JobManager(store.root.parent, store, corpora, settings.max_jobs, settings.training_threads, on_finished)
        pb_grpc.add_TrainingServicer_to_server(TrainingService(corpora, jobs), server)
        services += [pb.DESCRIPTOR.services_by_name[n].full_name for n in ("Models", "Training")]
    reflection.enable_server_reflection(services, server)
    address = f"{settings.host}:{settings.port}"
    credentials = _credentials(settings)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    running = RunningServer(server, service, health_servicer, port, metrics, jobs=jobs)
    await running.set_serving(False)
    await server.start()
    if jobs is not None:
        jobs.start()
    if settings.metrics_port is not None:
        running.metrics_port = metrics.serve(settings.metrics_port, settings.host)
    if registry is not None:
        await running.attach(registry)
    return running


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {"time": self.formatTime(record), "level": record.levelname.lower(), "message": record.getMessage()}
        payload.update({k: v for k, v in record.__dict__.items() if k in ("method", "code", "ms", "id", "port")})
        return json.dumps(payload)


def configure_logging(settings: ServerSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if settings.log_json else logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("tagger.server")
    logger.handlers[:] = [handler]
    logger.setLevel(settings.log_level.upper())


def limit_malloc_arenas(count: int = 2) -> None:
    """Cap glibc's malloc arenas (as ``MALLOC_ARENA_MAX`` would, for arenas made from now on).

    glibc gives threads that allocate at the same time arenas of their own, up to 8 per core,
    and keeps their freed memory: the worker, ensemble-member and gRPC threads then hold tens
    of MB more than one process needs (measured: 515 MB after 64 clients with the ensemble's
    members on threads, against 477 MB for one thread per model). Elsewhere: nothing.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, count)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


async def serve(settings: ServerSettings) -> None:
    """Load the models, serve until SIGTERM or SIGINT, drain, return."""
    configure_logging(settings)
    limit_malloc_arenas()
    if settings.torch_threads:
        import torch  # the only torch call the server makes: a thread setting

        torch.set_num_threads(settings.torch_threads)
    store = ModelStore(settings.data_dir, settings.max_versions)
    running = await build_server(settings, store=store)  # health NOT_SERVING while the models load
    try:
        store.clean()
        if not settings.models.is_dir() and not store.names():
            raise ArtifactError(f"{settings.models}: no such models directory, and the store {store.root} is empty")
        await asyncio.to_thread(store.seed, settings.models)
        registry = await asyncio.to_thread(ModelRegistry.from_store, store, settings.default_models,
                                           settings.backend)
    except Exception:
        await running.stop(0)
        raise
    await running.attach(registry)
    names = ", ".join(f"{e.name} ({e.version})" for e in registry.entries())
    log.info(f"serving {names} on {settings.host}:{running.port}; defaults {', '.join(registry.defaults)}",
             extra={"port": running.port})
    if running.metrics_port is not None:
        log.info(f"metrics on http://{settings.host}:{running.metrics_port}/metrics")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info(f"draining: up to {settings.grace_seconds:g}s for in-flight requests")
    await running.stop(settings.grace_seconds, settings.drain_seconds)
    log.info("stopped")
