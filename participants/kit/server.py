"""Serving participants: the server factory and `run`, the command line of a participant.

Beside the participants' services, the server answers the standard health service
(SERVING for "" and each service) and server reflection, so grpcurl and probes work.
TLS and auth are those of `saga serve` (docs/security.md): with an auth file, a command
is accepted only from the `orchestrator` role and a read needs `reader` or `operator`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from participants.kit.auth import AuthInterceptor, AuthPolicy, participant_rules
from participants.kit.database import Database, open_database
from participants.kit.failpoints import failpoint_from_environ
from participants.kit.participant import Participant
from participants.kit.tls import ServerTls, add_listener, server_tls

SHUTDOWN_GRACE_S = 5.0
HANDSHAKE_TIMEOUT_S = 10.0
"""A connection must finish its TLS handshake and send its HTTP/2 settings this soon, or
it is closed: silent or slow connections cannot pile up (gRPC's own bound is 120 s)."""
MAX_CONNECTION_IDLE_S = 300
"""A connection with no call for this long is closed (GOAWAY); the orchestrator's
channel reconnects at its next command."""


async def create_server(
    participants: Sequence[Participant],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tls: ServerTls | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    reflection_on: bool = True,
    handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
) -> tuple[grpc.aio.Server, int]:
    """Build the server and bind it; return it (not yet started) and its bound port.

    A coroutine because the asyncio health servicer's statuses are set on the loop.
    A malformed SAGA_PARTICIPANT_FAILPOINT is a ValueError here, before serving.
    """
    failpoint_from_environ()
    # Without SO_REUSEPORT a second process on the same port fails to start
    # instead of silently sharing the port (and the requests) with the first.
    options = [
        ("grpc.so_reuseport", 0),
        ("grpc.server_handshake_timeout_ms", max(1, round(handshake_timeout * 1000))),
        ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_S * 1000),
    ]
    server = grpc.aio.server(options=options, interceptors=interceptors)
    health_servicer = health.aio.HealthServicer()
    names = []
    for participant in participants:
        participant.add_to_server(server)
        names.append(participant.service_descriptor().full_name)
        await health_servicer.set(names[-1], health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if reflection_on:
        reflection.enable_server_reflection(
            (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    return server, add_listener(server, format_address(host, port), tls)


def format_address(host: str, port: int) -> str:
    """`host:port` as a gRPC target, with IPv6 hosts bracketed."""
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{bracketed}:{port}"


def run(
    participant: Callable[[Database], Participant],
    *,
    port: int = 0,
    database: str = "sqlite:///participant.db",
    argv: Sequence[str] | None = None,
) -> None:
    """The command line of one participant: `--port`, `--database` (sqlite:/// or
    postgresql://), `--host`, TLS and `--auth-file`; serves until SIGTERM or SIGINT and
    prints `<Service> listening on HOST:PORT` once it accepts calls."""
    parser = argparse.ArgumentParser(description=f"Serve {getattr(participant, '__name__', '')}")
    parser.add_argument("--port", type=int, default=port, help="port to bind; 0 picks one")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--database", default=database, help="sqlite:/// or postgresql:// URL")
    parser.add_argument("--tls-cert", help="serve TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the private key of --tls-cert (PEM)")
    parser.add_argument("--tls-client-ca", help="require client certificates from this CA")
    parser.add_argument("--auth-file", type=Path, help="callers and roles (docs/security.md)")
    args = parser.parse_args(argv)
    try:
        failpoint_from_environ()
        tls = server_tls(args.tls_cert, args.tls_key, args.tls_client_ca)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    served = participant(open_database(args.database))
    asyncio.run(serve(served, args.host, args.port, tls=tls, auth_file=args.auth_file))


async def serve(
    participant: Participant,
    host: str,
    port: int,
    *,
    tls: ServerTls | None = None,
    auth_file: Path | None = None,
) -> None:
    """Serve one participant until SIGTERM or SIGINT, then stop gracefully."""
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if auth_file is not None:
        rules = participant_rules([participant.service_descriptor()])
        interceptors.append(AuthInterceptor(AuthPolicy(auth_file, rules)))
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    server, bound = await create_server(
        [participant], host, port, tls=tls, interceptors=interceptors
    )
    await server.start()
    name = participant.name or participant.service_descriptor().name
    print(f"{name} listening on {format_address(host, bound)}", flush=True)
    await stopping.wait()
    await server.stop(SHUTDOWN_GRACE_S)
    participant.database.close()
