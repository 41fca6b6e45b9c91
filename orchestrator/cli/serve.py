"""`saga serve`: configure logging, gather the participants' addresses, run the server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from orchestrator.cli.options import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    env_or,
    load_definition_modules,
    parse_participants,
    read_token_file,
)
from orchestrator.cli.webhooks import webhooks_config
from orchestrator.core.errors import SagaError
from orchestrator.telemetry.logs import configure_logging

if TYPE_CHECKING:
    from orchestrator.events.config import EventsConfig
    from orchestrator.security.tls import ServerTls


def _console_tls(cert: str | None, key: str | None) -> ServerTls | None:
    from pathlib import Path

    from orchestrator.security.tls import ServerTls

    if bool(cert) != bool(key):
        raise CliError(
            "the console's HTTPS needs both --http-tls-cert and --http-tls-key", EXIT_USAGE
        )
    return ServerTls(Path(cert), Path(key)) if cert and key else None


def _events_config(args: argparse.Namespace) -> EventsConfig:
    from orchestrator.core.events import EventSet
    from orchestrator.events.config import EventsConfig

    if args.events_partitions > 4096:
        raise CliError("--events-partitions must be 1 to 4096", EXIT_USAGE)
    return EventsConfig(
        rabbitmq_url=args.events_rabbitmq or None,
        rabbitmq_exchange=args.events_rabbitmq_exchange,
        nats_url=args.events_nats or None,
        nats_stream=args.events_nats_stream,
        nats_subject_prefix=args.events_nats_subject_prefix,
        events=EventSet(args.events_set),
        saga_types=frozenset(args.events_saga_type),
        partitions=args.events_partitions,
    )


def tracked_serve_options(serve_cmd: argparse.ArgumentParser) -> None:
    """`saga serve`'s options of tracked (choreographed) sagas."""
    from orchestrator.cli.options import positive_float
    from orchestrator.engine.tracking import DEFAULT_WAIT_FOR_START_SECONDS

    serve_cmd.add_argument(
        "--tracked-wait-for-start",
        type=positive_float,
        default=env_or("SAGA_TRACKED_WAIT_FOR_START", str(DEFAULT_WAIT_FOR_START_SECONDS)),
        metavar="SECONDS",
        help="how long an event of a tracked saga waits for its instance's start event "
        "before it is recorded as an anomaly (env SAGA_TRACKED_WAIT_FOR_START; default "
        f"{DEFAULT_WAIT_FOR_START_SECONDS:g})",
    )


def serve_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.core.limits import Limits
    from orchestrator.events.ingest.config import IngestConfig
    from orchestrator.security.tls import client_tls, server_tls
    from orchestrator.server import ServeConfig, serve
    from orchestrator.store import PoolConfig

    try:
        configure_logging(args.log_level.upper(), args.log_format)
        addresses = parse_participants(env_or("SAGA_PARTICIPANTS", "") or "")
        for entry in args.participant:
            addresses.update(parse_participants(entry))
        config = ServeConfig(
            database_url=args.database,
            listen=args.listen,
            participants=addresses,
            ready_file=args.ready_file,
            lease_seconds=args.lease_seconds,
            metrics_listen=args.metrics_listen or None,
            http_listen=args.http_listen or None,
            log_format=args.log_format,
            trace_exporter=args.trace_exporter,
            limits=Limits(
                max_payload_bytes=args.max_payload_bytes,
                max_payload_depth=args.max_payload_depth,
                max_watch_streams=args.max_watch_streams,
                max_sagas_in_flight=args.max_sagas_in_flight,
                max_batch_starts=args.max_batch_starts,
            ),
            retention=args.retention,
            pool=PoolConfig(
                min_size=min(args.db_pool_min_size, args.db_pool_size),
                max_size=args.db_pool_size,
                timeout=args.db_timeout,
            ),
            tls=server_tls(args.tls_cert, args.tls_key, args.tls_client_ca),
            auth_file=Path(args.auth_file) if args.auth_file else None,
            reflection=args.reflection != "off",
            participants_tls=client_tls(
                args.participants_tls_ca, args.participants_tls_cert, args.participants_tls_key
            ),
            participants_token=read_token_file(args.participants_token_file),
            http_allowed_hosts=tuple(args.http_allowed_host),
            http_allow_no_auth=args.http_allow_no_auth,
            http_tls=_console_tls(args.http_tls_cert, args.http_tls_key),
            console_session_idle_seconds=args.console_session_idle.total_seconds(),
            console_session_lifetime_seconds=args.console_session_lifetime.total_seconds(),
            handshake_timeout_seconds=args.handshake_timeout,
            events=_events_config(args),
            webhooks=webhooks_config(args),
            tracked_wait_for_start=float(args.tracked_wait_for_start),
            ingest=IngestConfig.from_args(args),
            **({"replica_id": args.replica_id} if args.replica_id else {}),
        )
        asyncio.run(serve(config, load_definition_modules(args.definitions)))
    except CliError as error:
        print(f"saga serve: {error}", file=sys.stderr)
        return error.exit_code
    except (SagaError, ValueError, OSError) as error:
        print(f"saga serve: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
