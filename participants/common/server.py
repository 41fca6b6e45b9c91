"""The server factory: every selected participant service on one gRPC port.

Also served: the standard health service (SERVING for "" and for each
participant service) and server reflection, so grpcurl and probes work.
Every command runs with its log fields bound (service, saga_id, step,
idempotency_key) and, when a tracer is given, in a span that continues the
orchestrator's trace from the request metadata.
"""

from __future__ import annotations

import contextlib
import sqlite3

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from orchestrator.telemetry.interceptors import ParticipantInterceptor
from participants.common.commands import CommandProcessor
from participants.common.config import ParticipantConfig
from participants.common.failures import FailureInjector
from participants.common.spec import ServiceSpec
from participants.common.state import LocalState
from participants.registry import SERVICES


async def create_server(
    config: ParticipantConfig,
    *,
    resources: contextlib.ExitStack | None = None,
    tracer: trace.Tracer | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Build the server and bind it; return it (not yet started) and its bound port.

    Each service's state file `<state_dir>/<service>.sqlite3` is opened (and
    created and seeded if new) before this returns. Pass `resources` to have
    the files closed when the stack closes; otherwise they close with the
    process. The factory is a coroutine because the asyncio health servicer's
    statuses can only be set from the event loop. With `tracer`, each command
    gets a server span, a child of the caller's span when the metadata carries one.
    """
    # Without SO_REUSEPORT a second process on the same port fails to start
    # instead of silently sharing the port (and the requests) with the first.
    interceptor = ParticipantInterceptor(
        {SERVICES[name].full_name: name for name in config.services}, tracer
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)], interceptors=[interceptor])
    injector = FailureInjector(
        config.fail_rate,
        config.seed,
        config.fail_ids,
        unavailable_first=config.unavailable_first,
        compensation_failures=config.compensation_failures,
    )
    health_servicer = health.aio.HealthServicer()
    for name in config.services:
        spec = SERVICES[name]
        state = _open_state(spec, config)
        if resources is not None:
            resources.callback(state.close)
        processor = CommandProcessor(
            name,
            state,
            injector,
            latency_ms=config.latency_ms,
            failpoint=config.failpoint,
        )
        spec.add_to_server(spec.servicer(processor, config), server)
        await health_servicer.set(spec.full_name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service_names = [SERVICES[name].full_name for name in config.services]
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(f"{_host_for_address(config.host)}:{config.port}")
    if port == 0:
        raise OSError(f"could not bind {config.host}:{config.port}")
    return server, port


def _open_state(spec: ServiceSpec, config: ParticipantConfig) -> LocalState:
    def seed(db: sqlite3.Connection) -> None:
        spec.seed(db, config)

    return LocalState.open(config.state_dir / f"{spec.name}.sqlite3", spec.schema, seed)


def format_address(host: str, port: int) -> str:
    """`host:port` as a gRPC target, with IPv6 hosts bracketed."""
    return f"{_host_for_address(host)}:{port}"


def _host_for_address(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
