"""The orchestrator's gRPC server: its services, health, reflection, channel options and
auth policy. Built by the process wiring (`orchestrator.server`), and by tools and
tests that serve the API without the rest of the process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from orchestrator.api import webhooks_wiring
from orchestrator.api.events_admin import SagaEventsService
from orchestrator.api.ingest import INGEST_AUTH
from orchestrator.api.ingest import SERVICE_NAME as INGEST_SERVICE_NAME
from orchestrator.api.request_decoding import UndecodableRequestInterceptor
from orchestrator.api.servicer import SagaOrchestratorService
from orchestrator.api.step_services import SERVICE_NAMES as STEP_SERVICE_NAMES
from orchestrator.api.step_services import step_service_rules
from orchestrator.core.limits import Limits
from orchestrator.security.auth import AuthPolicy, events_rules, orchestrator_rules
from orchestrator.security.tls import ServerTls, add_listener
from saga.v1 import events_admin_pb2, events_admin_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["SagaOrchestrator"].full_name
EVENTS_SERVICE_NAME = events_admin_pb2.DESCRIPTOR.services_by_name["SagaEvents"].full_name
KEEPALIVE_SECONDS = 60
"""A connection quiet this long is pinged; one that does not answer in 20 s is closed,
and with it the streams of a client that died without a word."""
KEEPALIVE_TIMEOUT_SECONDS = 20
MAX_CONNECTION_AGE_SECONDS = 3600
"""Connections are closed (gracefully) after an hour, so clients rebalance over replicas."""
MAX_CONNECTION_AGE_GRACE_SECONDS = 300
"""Calls in progress when a connection ages out get this long to finish."""
HANDSHAKE_TIMEOUT_SECONDS = 10.0
"""A gRPC connection must finish its TLS handshake and send its HTTP/2 settings this
soon, and a console connection its request headers, or it is closed: silent or
slow connections cannot pile up (slowloris)."""
MAX_CONNECTION_IDLE_SECONDS = 300
"""A gRPC connection with no call in progress for this long is closed (GOAWAY; a client
reconnects when it next calls), so connections that never call are not kept."""


def server_options(
    limits: Limits, handshake_seconds: float = HANDSHAKE_TIMEOUT_SECONDS
) -> list[tuple[str, int]]:
    """gRPC channel arguments: message sizes that match the payload limit, keepalive
    pings that find dead clients, a maximum connection age, and bounds on connections
    that never finish their handshake or never call."""
    return [
        ("grpc.server_handshake_timeout_ms", max(1, round(handshake_seconds * 1000))),
        ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_SECONDS * 1000),
        ("grpc.max_receive_message_length", limits.grpc_message_bytes),
        ("grpc.max_send_message_length", limits.grpc_message_bytes),
        ("grpc.keepalive_time_ms", KEEPALIVE_SECONDS * 1000),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_SECONDS * 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_SECONDS * 1000),
        ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_SECONDS * 1000),
    ]


def create_server(
    listen: str,
    servicer: SagaOrchestratorService,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    limits: Limits | None = None,
    *,
    tls: ServerTls | None = None,
    with_reflection: bool = True,
    handshake_seconds: float = HANDSHAKE_TIMEOUT_SECONDS,
    events: SagaEventsService | None = None,
    services: Sequence[Callable[[grpc.aio.Server], Sequence[str]]] = (),
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A server with the API, health and (optionally) reflection, bound to `listen` with
    TLS when `tls` is given; returns the bound port."""
    server = grpc.aio.server(
        interceptors=[
            *interceptors,
            *map(UndecodableRequestInterceptor, (SERVICE_NAME, EVENTS_SERVICE_NAME)),
            *map(UndecodableRequestInterceptor, STEP_SERVICE_NAMES),
            UndecodableRequestInterceptor(webhooks_wiring.WEBHOOKS_SERVICE),
            UndecodableRequestInterceptor(INGEST_SERVICE_NAME),
        ],
        options=server_options(limits or Limits(), handshake_seconds),
    )
    orchestrator_pb2_grpc.add_SagaOrchestratorServicer_to_server(servicer, server)
    served = [SERVICE_NAME, *([] if events is None else [EVENTS_SERVICE_NAME])]
    if events is not None:
        events_admin_pb2_grpc.add_SagaEventsServicer_to_server(events, server)
    for add in services:
        served += add(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if with_reflection:
        reflection.enable_server_reflection(
            (*served, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    port = add_listener(server, listen, tls)
    return server, port, health_servicer


def auth_policy(auth_file: Path | None, *, reflection: bool = True) -> AuthPolicy | None:
    """The orchestrator's policy from its auth file; None (and a log line) when auth is off."""
    if auth_file is None:
        logger.info(
            "auth is OFF: any caller that reaches the port may start, read, abort, retry "
            "and resolve sagas; give --auth-file to require tokens or certificates"
        )
        return None
    rules = {
        **orchestrator_rules(orchestrator_pb2.DESCRIPTOR.services_by_name["SagaOrchestrator"]),
        **events_rules(events_admin_pb2.DESCRIPTOR.services_by_name["SagaEvents"]),
        **step_service_rules(),
        **webhooks_wiring.WEBHOOKS_AUTH,
        **INGEST_AUTH,
    }
    policy = AuthPolicy(auth_file, rules, reflection=reflection)
    logger.info("auth is on: callers from %s (SIGHUP re-reads it)", auth_file)
    return policy


__all__ = [
    "EVENTS_SERVICE_NAME",
    "HANDSHAKE_TIMEOUT_SECONDS",
    "INGEST_SERVICE_NAME",
    "SERVICE_NAME",
    "auth_policy",
    "create_server",
    "server_options",
]
