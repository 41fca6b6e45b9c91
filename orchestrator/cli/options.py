"""The `saga` command's shared pieces: exit codes, CliError, and the parsing of
option values (durations, points in time, ids, participant addresses), each also read
from an environment variable."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.client import CLIENT_TIMEOUT_SECONDS, WATCH_RECONNECT_SECONDS
from orchestrator.core.clock import utc_now
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.errors import InvalidArgument
from orchestrator.core.loading import (
    DEFAULT_DEFINITIONS_MODULE,
    load_definitions,
    make_working_directory_importable,
    parse_module_names,
)
from orchestrator.core.namespaces import check_namespace
from saga.v1 import orchestrator_pb2 as pb

DEFAULT_DATABASE_URL = "sqlite:///.saga/saga.sqlite3"
DEFAULT_LISTEN = "127.0.0.1:50051"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SAGA_FAILED = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000
"""The server's own cap on a ListSagas page."""
SAGA_STATUSES = {
    "running": pb.SAGA_STATUS_RUNNING,
    "compensating": pb.SAGA_STATUS_COMPENSATING,
    "completed": pb.SAGA_STATUS_COMPLETED,
    "failed": pb.SAGA_STATUS_FAILED,
}
PIPE_WIDTH = 4096
"""Columns rich may use when stdout is not a terminal: a row stays one line for grep."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class CliError(Exception):
    """A message for the person at the shell, printed as `error: ...` without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_participants(text: str) -> dict[str, str]:
    """`flight=127.0.0.1:7001,hotel=127.0.0.1:7002` as a dict; ValueError on a bad entry."""
    addresses: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = entry.partition("=")
        if not sep or not name or ":" not in address:
            raise ValueError(f"participant {entry!r} is not NAME=HOST:PORT")
        addresses[name] = address
    return addresses


def env_or(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `1h30m`, `2d`, `500ms`, `1w`; ValueError otherwise."""
    cleaned = text.strip().lower()
    parts = _DURATION_PART.findall(cleaned)
    if not parts or "".join(number + unit for number, unit in parts) != cleaned:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 1h30m or 2d")
    return timedelta(seconds=sum(float(n) * _DURATION_UNITS[unit] for n, unit in parts))


def parse_point_in_time(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise), or a duration meaning that long ago."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2025-01-31T12:00:00Z) "
            "nor a duration ago (90s, 15m, 1h30m, 2d)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def duration_argument(text: str) -> timedelta:
    try:
        value = parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not value > timedelta(0):
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def point_in_time(text: str) -> datetime:
    try:
        return parse_point_in_time(text, utc_now())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def list_limit(text: str) -> int:
    value = non_negative_int(text)
    if not 1 <= value <= MAX_LIST_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIST_LIMIT}, got {value}")
    return value


SHORT_ID_CHARACTERS = frozenset("0123456789abcdef-")


def saga_id_argument(text: str) -> str:
    """A whole saga id, or the end of one as `saga list` shows it (resolved against the
    server by `SagaClient.resolve_saga_id`); anything else gets a hint here."""
    try:
        canonical = str(uuid.UUID(text))
    except ValueError:
        canonical = ""
    if canonical == text or (text and set(text.lower()) <= SHORT_ID_CHARACTERS):
        return text.lower() if canonical != text else text
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a saga id (a UUID, as `saga start` printed it, or its last "
        "characters, as `saga list` shows them); `saga list --wide` shows whole ids"
    )


def operator_name(explicit: str | None) -> str:
    """Who asks, for the transition log: --by, else SAGA_OPERATOR, else the OS login."""
    if explicit:
        return explicit
    from_env = env_or("SAGA_OPERATOR")
    if from_env:
        return from_env
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise CliError(
            "cannot tell who you are: give --by NAME or set SAGA_OPERATOR", EXIT_USAGE
        ) from None


def add_definitions_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--definitions",
        action="append",
        default=[],
        metavar="MODULE",
        help="a Python module holding saga definitions (its DEFINITIONS, else its "
        "module-level SagaDefinition objects); repeatable, or comma-separated in env "
        f"SAGA_DEFINITIONS; default {DEFAULT_DEFINITIONS_MODULE}",
    )


def definition_modules(flags: Sequence[str]) -> list[str]:
    """The modules to load: the flags if any, else SAGA_DEFINITIONS, else the examples."""
    names = [name for flag in flags for name in parse_module_names(flag)]
    return (
        names
        or parse_module_names(env_or("SAGA_DEFINITIONS", "") or "")
        or [DEFAULT_DEFINITIONS_MODULE]
    )


def load_definition_modules(flags: Sequence[str]) -> list[SagaDefinition]:
    make_working_directory_importable()
    return load_definitions(definition_modules(flags))


def json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"print {what} as JSON (proto field names) and nothing else on stdout",
    )


def client_options() -> argparse.ArgumentParser:
    """Options every command that talks to the orchestrator shares."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--address",
        default=env_or("SAGA_ADDRESS", DEFAULT_LISTEN),
        help=f"orchestrator HOST:PORT (env SAGA_ADDRESS; default {DEFAULT_LISTEN})",
    )
    common.add_argument(
        "--timeout",
        type=positive_float,
        default=env_or("SAGA_TIMEOUT", str(CLIENT_TIMEOUT_SECONDS)),
        metavar="SECONDS",
        help="deadline of each call to the orchestrator "
        f"(env SAGA_TIMEOUT; default {CLIENT_TIMEOUT_SECONDS:g})",
    )
    common.add_argument(
        "--tls-ca",
        default=env_or("SAGA_CLIENT_TLS_CA"),
        metavar="FILE",
        help="connect with TLS, verifying the orchestrator with this CA (env SAGA_CLIENT_TLS_CA)",
    )
    common.add_argument(
        "--tls-cert",
        default=env_or("SAGA_CLIENT_TLS_CERT"),
        metavar="FILE",
        help="the client certificate for mutual TLS (env SAGA_CLIENT_TLS_CERT)",
    )
    common.add_argument(
        "--tls-key",
        default=env_or("SAGA_CLIENT_TLS_KEY"),
        metavar="FILE",
        help="the key of --tls-cert (env SAGA_CLIENT_TLS_KEY)",
    )
    common.add_argument(
        "--token-file",
        default=env_or("SAGA_TOKEN_FILE"),
        metavar="FILE",
        help="a file holding the bearer token to send (env SAGA_TOKEN_FILE; or the token "
        "itself in env SAGA_TOKEN)",
    )
    common.add_argument(
        "--namespace",
        default=env_or("SAGA_NAMESPACE"),
        type=namespace_argument,
        help="work in this namespace: start sagas there, read and act only there (env "
        "SAGA_NAMESPACE; default: start in your only namespace or `default`, read in all "
        "of yours)",
    )
    return common


def namespace_argument(text: str) -> str:
    try:
        return check_namespace(text)
    except InvalidArgument as error:
        raise argparse.ArgumentTypeError(error.message) from None


def server_security_options(parser: argparse.ArgumentParser, env_prefix: str) -> None:
    """TLS, the auth file and reflection of a server (`saga serve`, `saga participants`)."""

    def option(flag: str, help_text: str, **kwargs: Any) -> None:
        env = env_prefix + flag.removeprefix("--").replace("-", "_").upper()
        parser.add_argument(flag, default=env_or(env), help=f"{help_text} (env {env})", **kwargs)

    option("--tls-cert", "serve TLS with this certificate (PEM); default plaintext", metavar="FILE")
    option("--tls-key", "the private key of --tls-cert (PEM)", metavar="FILE")
    option(
        "--tls-client-ca",
        "require mutual TLS: clients must present a certificate signed by this CA",
        metavar="FILE",
    )
    option(
        "--auth-file",
        "callers, their token digests or certificate names, and roles (TOML; see "
        "docs/security.md); re-read on SIGHUP; default: no auth, anyone may call anything",
        metavar="FILE",
    )
    option(
        "--reflection",
        "serve gRPC reflection (on, off); default on",
        choices=("on", "off"),
        type=str.lower,
    )


def console_security_options(parser: argparse.ArgumentParser) -> None:
    """`saga serve`'s console flags: allowed Host names, TLS, sessions, and the
    connection handshake bound it shares with the gRPC listener."""
    parser.add_argument(
        "--http-allowed-host",
        action="append",
        default=[name for name in (env_or("SAGA_HTTP_ALLOWED_HOSTS", "") or "").split(",") if name],
        metavar="NAME",
        help="a Host name the console answers to besides localhost, 127.0.0.1 and [::1] "
        "(a DNS-rebinding page sends its own); repeatable (env SAGA_HTTP_ALLOWED_HOSTS, "
        "comma-separated)",
    )
    parser.add_argument(
        "--http-allow-no-auth",
        action="store_true",
        default=(env_or("SAGA_HTTP_ALLOW_NO_AUTH", "") or "").lower() in ("1", "true", "yes"),
        help="serve the console beyond loopback without --auth-file: anyone who reaches "
        "it may act (env SAGA_HTTP_ALLOW_NO_AUTH; default: refuse to start)",
    )
    parser.add_argument(
        "--http-tls-cert",
        default=env_or("SAGA_HTTP_TLS_CERT"),
        metavar="FILE",
        help="serve the console over HTTPS with this certificate (PEM) "
        "(env SAGA_HTTP_TLS_CERT; default plain HTTP)",
    )
    parser.add_argument(
        "--http-tls-key",
        default=env_or("SAGA_HTTP_TLS_KEY"),
        metavar="FILE",
        help="the private key of --http-tls-cert (env SAGA_HTTP_TLS_KEY)",
    )
    parser.add_argument(
        "--console-session-idle",
        type=duration_argument,
        default=env_or("SAGA_CONSOLE_SESSION_IDLE", "8h"),
        metavar="DURATION",
        help="a console session ends this long after its last request "
        "(env SAGA_CONSOLE_SESSION_IDLE; default 8h)",
    )
    parser.add_argument(
        "--console-session-lifetime",
        type=duration_argument,
        default=env_or("SAGA_CONSOLE_SESSION_LIFETIME", "24h"),
        metavar="DURATION",
        help="a console session ends this long after sign-in "
        "(env SAGA_CONSOLE_SESSION_LIFETIME; default 24h)",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=positive_float,
        default=env_or("SAGA_HANDSHAKE_TIMEOUT", "10"),
        metavar="SECONDS",
        help="close a gRPC connection that has not finished its handshake, or a console "
        "connection that has not sent its request headers, this soon "
        "(env SAGA_HANDSHAKE_TIMEOUT; default 10)",
    )


def read_token_file(path: str | None) -> str | None:
    """The token in `path` (surrounding whitespace dropped); None without a path."""
    if not path:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as error:
        raise CliError(f"cannot read the token file {path}: {error.strerror}", EXIT_USAGE) from None
    if not token:
        raise CliError(f"the token file {path} is empty", EXIT_USAGE)
    return token


def operator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason", required=True, help="why; recorded in the saga's transition log"
    )
    parser.add_argument(
        "--by",
        default=None,
        metavar="NAME",
        help="who asks, recorded in the log (default env SAGA_OPERATOR, else your login)",
    )


def watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reconnect-timeout",
        type=positive_float,
        default=env_or("SAGA_WATCH_RECONNECT_TIMEOUT", str(WATCH_RECONNECT_SECONDS)),
        metavar="SECONDS",
        help="after losing the orchestrator, keep trying to get the stream back this long "
        "(env SAGA_WATCH_RECONNECT_TIMEOUT; default %(default)s)",
    )


def events_options(parser: argparse.ArgumentParser) -> None:
    """`saga serve`'s broker sinks of events (docs/events.md), each also from the env."""
    group = parser.add_argument_group("events", "publish saga events to brokers")
    group.add_argument(
        "--events-rabbitmq",
        default=env_or("SAGA_EVENTS_RABBITMQ"),
        metavar="URL",
        help="publish events to RabbitMQ at this amqp:// URL (env SAGA_EVENTS_RABBITMQ)",
    )
    group.add_argument(
        "--events-rabbitmq-exchange",
        default=env_or("SAGA_EVENTS_RABBITMQ_EXCHANGE", "saga.events"),
        metavar="NAME",
        help="the topic exchange (env SAGA_EVENTS_RABBITMQ_EXCHANGE; default saga.events)",
    )
    group.add_argument(
        "--events-nats",
        default=env_or("SAGA_EVENTS_NATS"),
        metavar="URL",
        help="publish events to NATS JetStream at this nats:// URL (env SAGA_EVENTS_NATS)",
    )
    group.add_argument(
        "--events-nats-stream",
        default=env_or("SAGA_EVENTS_NATS_STREAM", "SAGA_EVENTS"),
        metavar="NAME",
        help="the JetStream stream (env SAGA_EVENTS_NATS_STREAM; default SAGA_EVENTS)",
    )
    group.add_argument(
        "--events-nats-subject-prefix",
        default=env_or("SAGA_EVENTS_NATS_SUBJECT_PREFIX", "sagas"),
        metavar="PREFIX",
        help="subjects are PREFIX.<saga type>.<event> (env SAGA_EVENTS_NATS_SUBJECT_PREFIX; "
        "default sagas)",
    )
    group.add_argument(
        "--events-set",
        choices=("lifecycle", "all"),
        default=env_or("SAGA_EVENTS_SET", "lifecycle"),
        help="the sagas' milestones only, or every transition (env SAGA_EVENTS_SET; "
        "default lifecycle)",
    )
    group.add_argument(
        "--events-saga-type",
        action="append",
        default=[t for t in (env_or("SAGA_EVENTS_SAGA_TYPES", "") or "").split(",") if t],
        metavar="NAME",
        help="only sagas of this type; repeatable (env SAGA_EVENTS_SAGA_TYPES, "
        "comma-separated; default every type)",
    )
    group.add_argument(
        "--events-partitions",
        type=positive_int,
        default=env_or("SAGA_EVENTS_PARTITIONS", "16"),
        metavar="N",
        help="partitions of each sink, the unit replicas share (env SAGA_EVENTS_PARTITIONS; "
        "default 16)",
    )
