"""The server factory: every selected participant service on one gRPC port.

Also served: the standard health service (SERVING for "" and for each
participant service) and server reflection, so grpcurl and probes work.
Every command runs with its log fields bound (service, saga_id, step,
idempotency_key) and, when a tracer is given, in a span that continues the
orchestrator's trace from the request metadata.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from orchestrator.security.auth import AuthInterceptor, AuthPolicy, participant_rules
from orchestrator.security.tls import add_listener
from orchestrator.telemetry.interceptors import ParticipantInterceptor
from participants.common.commands import CommandProcessor
from participants.common.config import ParticipantConfig
from participants.common.failures import FailureInjector
from participants.common.spec import ServiceSpec
from participants.common.state import LocalState
from participants.registry import SERVICES

logger = logging.getLogger(__name__)


async def create_server(
    config: ParticipantConfig,
    *,
    resources: contextlib.ExitStack | None = None,
    tracer: trace.Tracer | None = None,
    policy: AuthPolicy | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Build the server and bind it; return it (not yet started) and its bound port.

    Each service's state file `<state_dir>/<service>.sqlite3` is opened (and
    created and seeded if new) before this returns. Pass `resources` to have
    the files closed when the stack closes; otherwise they close with the
    process. The factory is a coroutine because the asyncio health servicer's
    statuses can only be set from the event loop. With `tracer`, each command
    gets a server span, a child of the caller's span when the metadata carries one.
    `policy` is the auth to enforce (a caller keeps it to reload on SIGHUP); by default
    it is read from `config.auth_file`, and without one there is no auth.
    """
    # Without SO_REUSEPORT a second process on the same port fails to start
    # instead of silently sharing the port (and the requests) with the first.
    interceptor = ParticipantInterceptor(
        {SERVICES[name].full_name: name for name in config.services}, tracer
    )
    interceptors: list[grpc.aio.ServerInterceptor] = [interceptor]
    policy = policy or participant_policy(config)
    if policy is not None:
        interceptors.append(AuthInterceptor(policy))
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)], interceptors=interceptors)
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
    if config.reflection:
        reflection.enable_server_reflection(
            (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    port = add_listener(server, f"{_host_for_address(config.host)}:{config.port}", config.tls)
    return server, port


def participant_policy(config: ParticipantConfig) -> AuthPolicy | None:
    """The auth policy of the configured services; None (and a log line) without a file.

    The rules come from the service descriptors: a command (a request with a
    CommandContext) needs the `orchestrator` role, any other RPC `reader` or `operator`.
    """
    if config.auth_file is None:
        logger.info("auth is OFF: any caller may send commands and read ledgers")
        return None
    return AuthPolicy(
        config.auth_file,
        participant_rules(SERVICES[name].descriptor for name in config.services),
        reflection=config.reflection,
    )


def _open_state(spec: ServiceSpec, config: ParticipantConfig) -> LocalState:
    def seed(db: sqlite3.Connection) -> None:
        spec.seed(db, config)

    return LocalState.open(config.state_dir / f"{spec.name}.sqlite3", spec.schema, seed)


def format_address(host: str, port: int) -> str:
    """`host:port` as a gRPC target, with IPv6 hosts bracketed."""
    return f"{_host_for_address(host)}:{port}"


def _host_for_address(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
