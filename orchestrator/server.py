"""Wiring of the orchestrator process: store, registry, executor, gRPC server.

The server also carries the standard gRPC health service and server reflection,
so generic tools (grpcurl, grpc_health_probe) can list and call the API. The
telemetry is wired here too: the log format, the Prometheus endpoint on its
own port, and the trace exporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from orchestrator.commands import ParticipantClient
from orchestrator.definition import SagaDefinition
from orchestrator.errors import ConfigurationError, SagaError
from orchestrator.executor import DEFAULT_LEASE_SECONDS, Executor, unique_replica_id
from orchestrator.records import Lease
from orchestrator.registry import Registry, check_unfinished_versions
from orchestrator.service import SagaOrchestratorService
from orchestrator.store import Store, open_store
from orchestrator.telemetry.engine import EngineTelemetry
from orchestrator.telemetry.interceptors import ServerMetricsInterceptor
from orchestrator.telemetry.logs import LOG_FORMATS, configure_logging
from orchestrator.telemetry.metrics import (
    MetricsServer,
    SagaMetrics,
    parse_listen,
    start_metrics_server,
)
from orchestrator.telemetry.tracing import TRACE_EXPORTERS, configure_tracing
from saga.v1 import orchestrator_pb2, orchestrator_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["SagaOrchestrator"].full_name
SHUTDOWN_GRACE_SECONDS = 5.0
TRACING_SERVICE_NAME = "saga-orchestrator"


@dataclass(frozen=True)
class ServeConfig:
    """Everything `saga serve` needs; built from flags and environment by the CLI."""

    database_url: str
    listen: str = "127.0.0.1:50051"
    participants: Mapping[str, str] = field(default_factory=dict)
    ready_file: str | None = None
    replica_id: str = field(default_factory=unique_replica_id)
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    # HOST:PORT of the Prometheus endpoint (port 0 picks a free one); None serves no metrics.
    metrics_listen: str | None = None
    # "auto" (JSON lines unless stderr is a terminal), "json" or "text"; see telemetry.logs.
    log_format: str = "auto"
    # "none" (no tracing), "console" or "otlp" (OTEL_EXPORTER_OTLP_ENDPOINT).
    trace_exporter: str = "none"


def create_server(
    listen: str,
    servicer: SagaOrchestratorService,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A server with the API, health and reflection, bound to `listen`; returns the bound port."""
    server = grpc.aio.server(interceptors=list(interceptors))
    orchestrator_pb2_grpc.add_SagaOrchestratorServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    return server, port, health_servicer


def _write_ready_file(path: str, address: str, metrics_address: str | None) -> None:
    """Atomically tell a supervisor (a test, the demo) where we listen."""
    document: dict[str, object] = {"address": address, "pid": os.getpid()}
    if metrics_address is not None:
        document["metrics_address"] = metrics_address
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(document, handle)
    os.replace(tmp, path)


def _check_telemetry_config(config: ServeConfig) -> None:
    if config.log_format not in LOG_FORMATS:
        raise ConfigurationError(
            f"log format must be one of {', '.join(LOG_FORMATS)}, got {config.log_format!r}"
        )
    if config.trace_exporter not in TRACE_EXPORTERS:
        raise ConfigurationError(
            f"trace exporter must be one of {', '.join(TRACE_EXPORTERS)}, "
            f"got {config.trace_exporter!r}"
        )
    if config.metrics_listen is not None:
        try:
            parse_listen(config.metrics_listen)
        except ValueError as error:
            raise ConfigurationError(str(error)) from error


async def serve(config: ServeConfig, definitions: Iterable[SagaDefinition]) -> None:
    """Run until SIGTERM or SIGINT; unfinished sagas are resumed at start.

    Raises DefinitionError or ConfigurationError, before serving anything, when
    a definition is inconsistent, a participant has no address, or an
    unfinished saga needs a definition version that is not registered.
    """
    if config.lease_seconds <= 0:
        raise ConfigurationError(f"lease seconds must be positive, got {config.lease_seconds:g}")
    _check_telemetry_config(config)
    # The level stays whatever the caller (the CLI) set; only the format is ours.
    configure_logging(
        logging.getLevelName(logging.getLogger().getEffectiveLevel()), config.log_format
    )
    tracing = configure_tracing(config.trace_exporter, TRACING_SERVICE_NAME)
    metrics: SagaMetrics | None = None
    metrics_server: MetricsServer | None = None
    try:
        if config.metrics_listen is not None:
            metrics = SagaMetrics()
            metrics_server = start_metrics_server(config.metrics_listen, metrics)
        await _serve(
            config,
            definitions,
            EngineTelemetry(metrics, tracing.tracer),
            None if metrics_server is None else metrics_server.address,
        )
    finally:
        if metrics_server is not None:
            metrics_server.close()
        tracing.shutdown()


INTERVENTION_GAUGE_SECONDS = 5.0
"""How often each replica counts the sagas needing an operator, for the gauge."""


async def count_needing_intervention(
    store: Store, metrics: SagaMetrics, saga_types: Sequence[str]
) -> None:
    """Keep the intervention gauge current until cancelled; a store outage skips a count."""
    while True:
        try:
            metrics.count_needing_intervention(await store.count_needing_intervention(), saga_types)
        except SagaError as error:
            logger.warning("could not count sagas needing intervention: %s", error)
        await asyncio.sleep(INTERVENTION_GAUGE_SECONDS)


async def _serve(
    config: ServeConfig,
    definitions: Iterable[SagaDefinition],
    telemetry: EngineTelemetry,
    metrics_address: str | None,
) -> None:
    registry = Registry(definitions)
    participants = ParticipantClient(config.participants)
    participants.check_addresses(registry.participants)
    store = open_store(config.database_url)
    await store.open()
    if telemetry.metrics is not None:
        telemetry.metrics.watch_store_pool(store.pool_stats)
    try:
        check_unfinished_versions(await store.unfinished_definitions(), registry)
    except BaseException:
        with contextlib.suppress(Exception):
            await store.close()
        raise
    logger.info(
        "saga definitions: %s",
        ", ".join(f"{d.name} v{d.version}" for d in registry.definitions),
    )
    executor = Executor(
        store,
        registry,
        participants,
        lease=Lease(config.replica_id, config.lease_seconds),
        telemetry=telemetry,
    )
    servicer = SagaOrchestratorService(registry, executor, store)
    interceptors = (
        [] if telemetry.metrics is None else [ServerMetricsInterceptor(telemetry.metrics)]
    )
    server, port, health_servicer = create_server(config.listen, servicer, interceptors)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = config.listen.rsplit(":", 1)[0]
    address = f"{host}:{port}"
    # Handlers first: a supervisor may send SIGTERM the moment we say we are ready.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    executor.resume_unfinished()
    gauge = None
    if telemetry.metrics is not None:
        gauge = asyncio.create_task(
            count_needing_intervention(store, telemetry.metrics, registry.saga_types)
        )
    logger.info("orchestrator listening on %s; resuming unfinished sagas", address)
    if metrics_address is not None:
        logger.info("metrics on http://%s/metrics", metrics_address)
    print(f"orchestrator listening on {address}", flush=True)
    if config.ready_file:
        _write_ready_file(config.ready_file, address, metrics_address)
    await stop.wait()

    logger.info("shutting down")
    if gauge is not None:
        gauge.cancel()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(SHUTDOWN_GRACE_SECONDS)
    await executor.stop()
    await participants.close()
    with contextlib.suppress(Exception):
        await store.close()
