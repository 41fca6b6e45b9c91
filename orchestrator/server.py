"""Wiring of the orchestrator process: store, registry, executor, gRPC server.

The server also carries the standard gRPC health service and server reflection,
so generic tools (grpcurl, grpc_health_probe) can list and call the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from orchestrator.commands import ParticipantClient
from orchestrator.definition import SagaDefinition
from orchestrator.errors import ConfigurationError
from orchestrator.executor import DEFAULT_LEASE_SECONDS, Executor, unique_replica_id
from orchestrator.records import Lease
from orchestrator.registry import Registry, check_unfinished_versions
from orchestrator.service import SagaOrchestratorService
from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2, orchestrator_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["SagaOrchestrator"].full_name
SHUTDOWN_GRACE_SECONDS = 5.0


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
    listen: str, servicer: SagaOrchestratorService
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A server with the API, health and reflection, bound to `listen`; returns the bound port."""
    server = grpc.aio.server()
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


def _write_ready_file(path: str, address: str) -> None:
    """Atomically tell a supervisor (a test, the demo) where we listen."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump({"address": address, "pid": os.getpid()}, handle)
    os.replace(tmp, path)


async def serve(config: ServeConfig, definitions: Iterable[SagaDefinition]) -> None:
    """Run until SIGTERM or SIGINT; unfinished sagas are resumed at start.

    Raises DefinitionError or ConfigurationError, before serving anything, when
    a definition is inconsistent, a participant has no address, or an
    unfinished saga needs a definition version that is not registered.
    """
    if config.lease_seconds <= 0:
        raise ConfigurationError(f"lease seconds must be positive, got {config.lease_seconds:g}")
    registry = Registry(definitions)
    participants = ParticipantClient(config.participants)
    participants.check_addresses(registry.participants)
    store = open_store(config.database_url)
    await store.open()
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
        store, registry, participants, lease=Lease(config.replica_id, config.lease_seconds)
    )
    servicer = SagaOrchestratorService(registry, executor, store)
    server, port, health_servicer = create_server(config.listen, servicer)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = config.listen.rsplit(":", 1)[0]
    address = f"{host}:{port}"
    resumed = await executor.resume_unfinished()
    logger.info("orchestrator listening on %s; resumed %d unfinished saga(s)", address, resumed)
    print(f"orchestrator listening on {address}", flush=True)
    if config.ready_file:
        _write_ready_file(config.ready_file, address)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()

    logger.info("shutting down")
    await health_servicer.enter_graceful_shutdown()
    await server.stop(SHUTDOWN_GRACE_SECONDS)
    await executor.stop()
    await participants.close()
    with contextlib.suppress(Exception):
        await store.close()
