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
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from orchestrator.api import webhooks_wiring
from orchestrator.api.events_admin import SagaEventsService
from orchestrator.api.grpc_server import (
    EVENTS_SERVICE_NAME,
    HANDSHAKE_TIMEOUT_SECONDS,
    INGEST_SERVICE_NAME,
    SERVICE_NAME,
    auth_policy,
    create_server,
)
from orchestrator.api.ingest import SagaEventIngestService
from orchestrator.api.servicer import SagaOrchestratorService
from orchestrator.api.step_services import SERVICE_NAMES as STEP_SERVICE_NAMES
from orchestrator.api.step_services import step_services
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.errors import ConfigurationError, SagaError
from orchestrator.core.events import EventSink
from orchestrator.core.incoming import CommandEventPublisher, EventIngestor, NoTrackedTypes
from orchestrator.core.limits import Limits
from orchestrator.core.records import Lease
from orchestrator.core.registry import Registry, check_unfinished_versions
from orchestrator.engine.commands import ParticipantClient
from orchestrator.engine.executor import Executor
from orchestrator.engine.leases import DEFAULT_LEASE_SECONDS, unique_replica_id
from orchestrator.engine.retention import keep_retention
from orchestrator.engine.tracking import DEFAULT_WAIT_FOR_START_SECONDS, TrackedEvents
from orchestrator.events.brokers import Publisher
from orchestrator.events.config import EventsConfig
from orchestrator.events.ingest.batches import IngestMetrics
from orchestrator.events.ingest.config import IngestConfig, TrackedEventsIn
from orchestrator.events.relay import Relay, RelayMetrics, RelaySettings
from orchestrator.security.auth import AuthInterceptor
from orchestrator.security.tls import ClientTls, ServerTls, is_loopback
from orchestrator.store import PoolConfig, Store, open_store
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
from orchestrator.telemetry.tracking import CountedIngestor

logger = logging.getLogger(__name__)

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
    # HOST:PORT of the operators' web console (port 0 picks a free one); None serves none.
    http_listen: str | None = None
    limits: Limits = field(default_factory=Limits)
    pool: PoolConfig = field(default_factory=PoolConfig)
    # Finished sagas older than this are deleted (never those needing intervention); None keeps all.
    retention: timedelta | None = None

    # TLS on the listener (mutual TLS when it names a client CA); None is plaintext.
    tls: ServerTls | None = None
    # The callers, their tokens or certificates, and roles; None lets anyone call anything.
    auth_file: Path | None = None
    # Server reflection (grpcurl's `list`, `describe`); open to all callers when on.
    reflection: bool = True
    # How the orchestrator reaches participants: the CA that verifies them, its own
    # client certificate, and the bearer token it sends (each None when not used).
    participants_tls: ClientTls | None = None
    participants_token: str | None = None

    # Host names the console answers to besides loopback (in laptop mode; with an
    # auth file, naming any restricts it to those and loopback).
    http_allowed_hosts: tuple[str, ...] = ()
    # Serve the console beyond loopback without an auth file (refused unless set).
    http_allow_no_auth: bool = False
    # HTTPS for the console; None serves plain HTTP.
    http_tls: ServerTls | None = None
    # Console sessions end this long after their last request, or after sign-in.
    console_session_idle_seconds: float = 8 * 3600.0
    console_session_lifetime_seconds: float = 24 * 3600.0
    # Bound on a connection's handshake (gRPC) or request headers (console).
    handshake_timeout_seconds: float = HANDSHAKE_TIMEOUT_SECONDS
    # Broker sinks of events (docs/events.md); none by default.
    events: EventsConfig = field(default_factory=EventsConfig)
    webhooks: webhooks_wiring.WebhooksConfig = field(default_factory=webhooks_wiring.WebhooksConfig)
    # How long an event of a tracked saga waits for its instance to start before it is
    # recorded as an anomaly (docs/tracking.md).
    tracked_wait_for_start: float = DEFAULT_WAIT_FOR_START_SECONDS
    # Where tracked sagas' events come in from (RabbitMQ, NATS), and where rescues'
    # compensation events go out.
    ingest: IngestConfig = field(default_factory=IngestConfig)


def _write_ready_file(
    path: str, address: str, metrics_address: str | None, console_url: str | None
) -> None:
    """Atomically tell a supervisor (a test, the demo) where we listen."""
    document: dict[str, object] = {"address": address, "pid": os.getpid()}
    if metrics_address is not None:
        document["metrics_address"] = metrics_address
    if console_url is not None:
        document["console_url"] = console_url
    tmp = f"{path}.tmp"
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(document, handle)
    os.replace(tmp, path)


def _check_console_config(config: ServeConfig) -> None:
    """Refuse a console anyone on the network could drive: beyond loopback without an
    auth file, unless the operator says so (`--http-allow-no-auth`), then loudly."""
    if config.handshake_timeout_seconds <= 0:
        raise ConfigurationError(
            f"handshake timeout must be positive, got {config.handshake_timeout_seconds:g}"
        )
    if config.http_listen is None:
        return
    try:
        host, _ = parse_listen(config.http_listen)
    except ValueError as error:
        raise ConfigurationError(str(error)) from error
    if config.auth_file is not None or is_loopback(host):
        return
    if not config.http_allow_no_auth:
        raise ConfigurationError(
            f"the console would listen on {config.http_listen} without an auth file: anyone "
            "who reaches it could abort, retry and resolve sagas. Give --auth-file, listen "
            "on loopback, or pass --http-allow-no-auth to accept it"
        )
    logger.warning(
        "the console listens on %s WITHOUT AUTHENTICATION: anyone who reaches it may "
        "abort, retry and resolve sagas (--http-allow-no-auth)",
        config.http_listen,
    )


def _console_ssl(tls: ServerTls | None, client_ca: Path | None = None) -> ssl.SSLContext | None:
    """The console's HTTPS; with the gRPC listener's client CA, a client certificate is
    asked for and verified when offered (the HTTP API's mutual TLS), not required (a
    browser signs in with a token)."""
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert, tls.key)
        if client_ca is not None:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(f"cannot load the console's TLS certificate: {error}") from None
    return context


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
    if config.retention is not None and config.retention <= timedelta(0):
        raise ConfigurationError(f"retention must be positive, got {config.retention}")
    if config.lease_seconds <= 0:
        raise ConfigurationError(f"lease seconds must be positive, got {config.lease_seconds:g}")
    if config.tracked_wait_for_start <= 0:
        raise ConfigurationError(
            f"--tracked-wait-for-start must be positive, got {config.tracked_wait_for_start:g}"
        )
    _check_telemetry_config(config)
    _check_console_config(config)
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


def _start_relay(
    config: ServeConfig,
    store: Store,
    telemetry: EngineTelemetry,
    broker_sinks: Sequence[tuple[EventSink, Publisher]],
) -> Relay | None:
    """The event relay of the broker sinks, woken by this process's writes; None without."""
    if not broker_sinks:
        return None
    metrics = None if telemetry.metrics is None else RelayMetrics(telemetry.metrics.registry)
    # Partitions are leased for as long as sagas are: a replica that dies hands both on together.
    settings = RelaySettings(lease_seconds=config.lease_seconds)
    relay = Relay(store, broker_sinks, config.replica_id, settings, metrics)
    store.on_written(relay.wake)
    relay.start()
    logger.info("event relay: sinks %s", ", ".join(sink.name for sink, _ in broker_sinks))
    return relay


def _start_retention(
    config: ServeConfig, store: Store, telemetry: EngineTelemetry
) -> asyncio.Task[None] | None:
    if config.retention is None:
        return None
    metrics = telemetry.metrics
    counter = None if metrics is None else metrics.retention_deleted
    logger.info(
        "retention: finished sagas are deleted %s after their last change", config.retention
    )
    return asyncio.create_task(
        keep_retention(
            store, config.retention, (lambda n: None) if counter is None else counter.inc
        ),
        name="retention",
    )


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
    policy = auth_policy(config.auth_file, reflection=config.reflection)
    client_ca = None if config.tls is None else config.tls.client_ca
    console_ssl = _console_ssl(
        config.http_tls, client_ca
    )  # a bad certificate stops us before serving
    participants = ParticipantClient(
        config.participants, tls=config.participants_tls, token=config.participants_token
    )
    participants.check_addresses(registry.called_participants)
    webhooks = webhooks_wiring.Webhooks(config.webhooks, config.replica_id)
    broker_sinks = [*config.events.sinks(), *webhooks.sinks()]
    store = open_store(
        config.database_url,
        config.pool,
        replica_id=config.replica_id,
        event_sinks=[sink for sink, _ in broker_sinks],
    )
    await store.open()
    if telemetry.metrics is not None:
        telemetry.metrics.watch_store_pool(store.pool_stats)
        telemetry.metrics.set_limits(
            max_sagas_in_flight=config.limits.max_sagas_in_flight,
            max_watch_streams=config.limits.max_watch_streams,
        )
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
    # The orchestrator's own events (a tracked saga's rescue compensations), published by
    # the ways in's broker (events/ingest) when one is configured; None sends none.
    ingest_metrics = IngestMetrics(
        None if telemetry.metrics is None else telemetry.metrics.registry
    )
    ways_in = TrackedEventsIn(config.ingest, ingest_metrics)
    try:
        command_events: CommandEventPublisher | None = await ways_in.connect_publisher()
    except BaseException:
        with contextlib.suppress(Exception):
            await store.close()
        raise
    executor = Executor(
        store,
        registry,
        participants,
        lease=Lease(config.replica_id, config.lease_seconds),
        max_active_sagas=config.limits.max_sagas_in_flight,
        telemetry=telemetry,
        command_events=command_events,
    )
    # The one EventIngestor of this process (None without tracked saga types): every way
    # in (RabbitMQ, NATS, IngestEvents, the HTTP binding) hands its batches to it.
    tracked_events = TrackedEvents.for_registry(
        store, registry, executor, wait_for_start=config.tracked_wait_for_start
    )
    # Every way in hands its batches to `ingestor`: the tracker, counted by saga type.
    ingestor: EventIngestor | None = tracked_events
    if tracked_events is not None and telemetry.metrics is not None:
        ingestor = CountedIngestor(tracked_events, registry.definitions, telemetry.metrics)
    # Served whatever the registry holds (a server without tracked types ignores every
    # event), so every client finds the same services.
    ingest = SagaEventIngestService(ingestor or NoTrackedTypes(), store, ingest_metrics)
    servicer = SagaOrchestratorService(registry, executor, store, config.limits)
    webhooks.start(store, telemetry.metrics, servicer)
    events = SagaEventsService(store, webhooks.described(config.events), config.replica_id)
    if telemetry.metrics is not None:
        telemetry.metrics.watch_streams.set_function(lambda: servicer.watch_streams)
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if telemetry.metrics is not None:
        interceptors.append(ServerMetricsInterceptor(telemetry.metrics))
    if policy is not None:
        interceptors.append(AuthInterceptor(policy))
    steps = step_services(store, registry, executor, config.limits)
    server, port, health_servicer = create_server(
        config.listen,
        servicer,
        interceptors,
        config.limits,
        tls=config.tls,
        with_reflection=config.reflection,
        handshake_seconds=config.handshake_timeout_seconds,
        events=events,
        services=[webhooks.register, steps.add_to, ingest.register],
    )
    await server.start()
    console = None
    if config.http_listen is not None:
        # Imported only when asked for: the console's HTTP stack costs start-up time.
        from orchestrator.api.callbacks import SERVICE_NAME as CALLBACKS_SERVICE_NAME
        from orchestrator.api.tasks import SERVICE_NAME as TASKS_SERVICE_NAME
        from orchestrator.web import start_web_console
        from orchestrator.web.auth import policy_authenticator
        from orchestrator.web.ingest import EventIngestRoute
        from orchestrator.web.rest import RestServices
        from orchestrator.web.sessions import SessionTable

        console_host, console_port = parse_listen(config.http_listen)
        console = await start_web_console(
            console_host,
            console_port,
            servicer,
            authenticate=None if policy is None else policy_authenticator(policy),
            allowed_hosts=config.http_allowed_hosts,
            sessions=SessionTable(
                config.console_session_idle_seconds, config.console_session_lifetime_seconds
            ),
            header_timeout=config.handshake_timeout_seconds,
            ssl_context=console_ssl,
            events=events,
            tasks=steps.tasks,
            api=RestServices(
                {
                    SERVICE_NAME: servicer,
                    EVENTS_SERVICE_NAME: events,
                    TASKS_SERVICE_NAME: steps.tasks,
                    webhooks_wiring.WEBHOOKS_SERVICE: webhooks.service,
                    CALLBACKS_SERVICE_NAME: steps.callbacks,
                    INGEST_SERVICE_NAME: ingest,
                },
                policy,
                max_body_bytes=2 * config.limits.grpc_message_bytes,
            ),
            ingest=EventIngestRoute(ingest, policy, body_seconds=config.handshake_timeout_seconds),
        )
    for name in ("", SERVICE_NAME, EVENTS_SERVICE_NAME, *STEP_SERVICE_NAMES, INGEST_SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = config.listen.rsplit(":", 1)[0]
    address = f"{host}:{port}"
    # Handlers first: a supervisor may send SIGTERM the moment we say we are ready.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if policy is not None:
        loop.add_signal_handler(signal.SIGHUP, policy.reload)
    executor.resume_unfinished()
    if tracked_events is not None:
        tracked_events.start()
        await ways_in.start(ingestor or tracked_events, sorted(tracked_events.event_types))
    relay = _start_relay(config, store, telemetry, broker_sinks)
    retention = _start_retention(config, store, telemetry)
    gauge = None
    if telemetry.metrics is not None:
        gauge = asyncio.create_task(
            count_needing_intervention(store, telemetry.metrics, registry.saga_types)
        )
    logger.info("orchestrator listening on %s; resuming unfinished sagas", address)
    if metrics_address is not None:
        logger.info("metrics on http://%s/metrics", metrics_address)
    console_url = None if console is None else console.url
    if console_url is not None:
        logger.info("web console on %s", console_url)
    print(f"orchestrator listening on {address}", flush=True)
    if config.ready_file:
        _write_ready_file(config.ready_file, address, metrics_address, console_url)
    await stop.wait()

    logger.info("shutting down")
    if gauge is not None:
        gauge.cancel()
    await health_servicer.enter_graceful_shutdown()
    if console is not None:
        await console.stop()
    await server.stop(SHUTDOWN_GRACE_SECONDS)
    if retention is not None:
        retention.cancel()
        await asyncio.gather(retention, return_exceptions=True)
    await ways_in.stop()
    if tracked_events is not None:
        await tracked_events.stop()
    await executor.stop()
    if relay is not None:
        await relay.stop()
    await webhooks.stop()
    await participants.close()
    with contextlib.suppress(Exception):
        await store.close()
