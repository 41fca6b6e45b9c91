"""`python -m participants`: host the selected participant services on one port.

Every option can also come from an environment variable (named in --help),
so a process manager or test can configure the process without a command
line. `saga participants ...` calls `main` with its remaining arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace

from orchestrator.core.errors import ConfigurationError
from orchestrator.telemetry.logs import LOG_FORMATS, configure_logging
from orchestrator.telemetry.tracing import TRACE_EXPORTERS, configure_tracing
from participants.common.config import ALL_SERVICES, ParticipantConfig
from participants.common.server import build_example_server, participant_policy
from participants.kit.failpoints import FAILPOINT_VAR, failpoint_from_environ
from participants.kit.server import format_address
from participants.kit.tls import SecurityConfigError, server_tls

logger = logging.getLogger("participants")

ENV_PREFIX = "SAGA_PARTICIPANT_"
SHUTDOWN_GRACE_S = 5.0
TRACING_SERVICE_NAME = "saga-participants"


def build_parser(environ: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    """The CLI; each option's default is read from its SAGA_PARTICIPANT_* variable."""
    parser = argparse.ArgumentParser(
        prog="participants",
        description="Serve example saga participant services over gRPC on one port.",
        epilog=(
            f"Crash testing: {FAILPOINT_VAR}=before_commit[:N] or after_commit[:N] makes the"
            " process exit with code 137 right before or right after committing the N-th"
            " recorded command (default 1st), before replying. Failure injection"
            " (--fail-*, --latency-ms) applies to actions only, never to compensations or reads."
        ),
    )

    def option(flag: str, help_text: str, default: str | None = None, **kwargs: Any) -> None:
        env = ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()
        # argparse runs `type` on string defaults too, so env values are parsed like flags.
        parser.add_argument(
            flag, default=environ.get(env, default), help=f"{help_text} (env {env})", **kwargs
        )

    option(
        "--services",
        f"comma-separated services to serve, of: {', '.join(ALL_SERVICES)}; default all",
        default=",".join(ALL_SERVICES),
        metavar="NAMES",
    )
    option("--host", "address to bind", default="127.0.0.1")
    option("--port", "port to bind; 0 picks a free one", type=int, default="0")
    option("--state-dir", "directory of the <service>.sqlite3 state files (required)", type=Path)
    option(
        "--capacity",
        "seats/rooms/cars/units per catalogue item, used when a state file is created",
        type=int,
        default="100",
    )
    option(
        "--max-charge-minor",
        "payment: charges above this many minor units are declined",
        type=int,
        default="500000",
    )
    option(
        "--fail-rate",
        "probability an action fails with INJECTED_FAILURE, decided per idempotency key",
        type=float,
        default="0",
    )
    option("--seed", "seed of the --fail-rate decision", type=int, default="0")
    option(
        "--fail-ids",
        "comma-separated values; an action with any string field equal to one fails",
        default="",
        metavar="IDS",
    )
    option("--latency-ms", "delay added before handling each action", type=int, default="0")
    option(
        "--unavailable-first",
        "answer the first N deliveries of each action UNAVAILABLE, changing nothing",
        type=int,
        default="0",
    )
    option(
        "--compensation-failures",
        "answer the first N deliveries of each compensation UNAVAILABLE; -1 for all",
        type=int,
        default="0",
    )
    option(
        "--ready-file",
        'once listening, write {"address", "services", "pid"} JSON here atomically',
        type=Path,
    )
    option("--log-level", "logging level", default="INFO")
    option(
        "--log-format",
        "auto (JSON lines unless stderr is a terminal), json or text",
        default="auto",
        choices=LOG_FORMATS,
    )
    option(
        "--trace-exporter",
        "none, console (spans as JSON lines on stdout) or otlp (OTEL_EXPORTER_OTLP_ENDPOINT)",
        default="none",
        choices=TRACE_EXPORTERS,
    )
    option("--tls-cert", "serve TLS with this certificate (PEM); default plaintext", metavar="FILE")
    option("--tls-key", "the private key of --tls-cert (PEM)", metavar="FILE")
    option(
        "--tls-client-ca",
        "require mutual TLS: clients must present a certificate signed by this CA",
        metavar="FILE",
    )
    option(
        "--auth-file",
        "callers and roles (TOML, docs/security.md): commands only from the orchestrator "
        "role, reads need reader; re-read on SIGHUP; default no auth",
        type=Path,
    )
    option("--reflection", "serve gRPC reflection", default="on", choices=("on", "off"))
    return parser


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> ParticipantConfig:
    """The process configuration; raises ValueError on a bad combination."""
    if args.state_dir is None:
        raise ValueError(f"--state-dir (or {ENV_PREFIX}STATE_DIR) is required")
    failpoint_from_environ(environ)  # a misspelt failpoint is a usage error, not a late crash
    return ParticipantConfig(
        state_dir=args.state_dir,
        services=_names(args.services),
        host=args.host,
        port=args.port,
        capacity=args.capacity,
        max_charge_minor=args.max_charge_minor,
        fail_rate=args.fail_rate,
        seed=args.seed,
        fail_ids=frozenset(_names(args.fail_ids)),
        latency_ms=args.latency_ms,
        unavailable_first=args.unavailable_first,
        compensation_failures=args.compensation_failures,
        tls=server_tls(args.tls_cert, args.tls_key, args.tls_client_ca),
        auth_file=args.auth_file,
        reflection=args.reflection == "on",
    )


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def write_ready_file(path: Path, address: str, services: Sequence[str]) -> None:
    """Write the ready file so a reader never sees it half-written (temp file + rename)."""
    document = {
        "address": address,
        "services": dict.fromkeys(services, address),
        "pid": os.getpid(),
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document))
    os.replace(temporary, path)


async def serve(
    config: ParticipantConfig, ready_file: Path | None, trace_exporter: str = "none"
) -> int:
    """Serve until SIGTERM or SIGINT, then stop gracefully; the exit status."""
    tracing = configure_tracing(trace_exporter, TRACING_SERVICE_NAME)
    try:
        return await _serve(config, ready_file, tracing.tracer)
    finally:
        tracing.shutdown()


async def _serve(
    config: ParticipantConfig, ready_file: Path | None, tracer: trace.Tracer | None
) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Installed before the ready file exists, so a SIGTERM sent right after
    # readiness still takes the graceful path.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    with contextlib.ExitStack() as resources:
        try:
            policy = participant_policy(config)
            server, port = await build_example_server(
                config, resources=resources, tracer=tracer, policy=policy
            )
        except (
            OSError,
            RuntimeError,
            sqlite3.Error,
            SecurityConfigError,
            ConfigurationError,
        ) as error:
            logger.error("cannot start participants: %s", error)
            return 1
        if policy is not None:
            loop.add_signal_handler(signal.SIGHUP, policy.reload)
        await server.start()
        address = format_address(config.host, port)
        if ready_file is not None:
            write_ready_file(ready_file, address, config.services)
            resources.callback(ready_file.unlink, missing_ok=True)
        print(f"participants listening on {address} ({', '.join(config.services)})", flush=True)

        await stopping.wait()
        logger.info("stopping participants on %s", address)
        await server.stop(SHUTDOWN_GRACE_S)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse options, configure logging and serve; the process exit status."""
    parser = build_parser(os.environ)
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        config = config_from_args(args, os.environ)
    except (ValueError, ConfigurationError) as error:
        parser.error(str(error))
    return asyncio.run(serve(config, args.ready_file, args.trace_exporter))


if __name__ == "__main__":
    sys.exit(main())
