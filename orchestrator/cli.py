"""The `saga` command: serve the orchestrator, run the example participants, start,
list, inspect, watch and steer sagas, and describe a saga type's definition.

Every option also reads an environment variable (named in --help), so the same
settings work from a shell, a container or a test. Client commands print tables
for people and, with --json, the API's own JSON and nothing else for scripts.

Exit codes: 0 success; 1 an error (the server's answer, or no server); 2 a usage
error; 3 `saga watch` (or `start --watch`) saw the saga end FAILED; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from orchestrator import console as view
from orchestrator.clock import utc_now
from orchestrator.definition import SagaDefinition
from orchestrator.describe import FORMATS, describe
from orchestrator.errors import ConfigurationError, SagaError
from orchestrator.loading import (
    DEFAULT_DEFINITIONS_MODULE,
    load_definitions,
    make_working_directory_importable,
    parse_module_names,
)
from orchestrator.registry import Registry
from orchestrator.telemetry.logs import LOG_FORMATS, configure_logging
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc

DEFAULT_DATABASE_URL = "sqlite:///.saga/saga.sqlite3"
DEFAULT_LISTEN = "127.0.0.1:50051"
CLIENT_TIMEOUT_SECONDS = 10.0
"""Deadline of each unary call a client command makes (--timeout, SAGA_TIMEOUT)."""
IMAGE_FORMATS = {".png": "png", ".svg": "svg"}
"""Output suffixes `saga describe --output` renders with Graphviz's `dot`."""
GRAPHVIZ_TIMEOUT_SECONDS = 60.0

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

WATCH_RECONNECT_SECONDS = 30.0
"""How long `saga watch` keeps trying to get its stream back before it gives up."""
RECONNECT_FIRST_BACKOFF = 0.25
RECONNECT_MAX_BACKOFF = 4.0
RECONNECT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
"""What a lost or restarting server looks like from a stream; anything else is an answer."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class CliError(Exception):
    """A message for the person at the shell, printed as `error: ...` without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- options ------------------------------------------------------------------------------------


def parse_participants(text: str) -> dict[str, str]:
    """`flight=127.0.0.1:7001,hotel=127.0.0.1:7002` as a dict; ValueError on a bad entry."""
    addresses: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = entry.partition("=")
        if not sep or not name or ":" not in address:
            raise ValueError(f"participant {entry!r} is not NAME=HOST:PORT")
        addresses[name] = address
    return addresses


def _env(name: str, default: str | None = None) -> str | None:
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


def _point_in_time(text: str) -> datetime:
    try:
        return parse_point_in_time(text, utc_now())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _list_limit(text: str) -> int:
    value = _non_negative_int(text)
    if not 1 <= value <= MAX_LIST_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIST_LIMIT}, got {value}")
    return value


def _saga_id(text: str) -> str:
    """Checked here so a shortened id gets a hint, not the server's bare refusal."""
    try:
        canonical = str(uuid.UUID(text))
    except ValueError:
        canonical = ""
    if canonical != text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a saga id (a UUID, as `saga start` printed it); "
            "`saga list --wide` shows whole ids"
        )
    return text


def operator_name(explicit: str | None) -> str:
    """Who asks, for the transition log: --by, else SAGA_OPERATOR, else the OS login."""
    if explicit:
        return explicit
    from_env = _env("SAGA_OPERATOR")
    if from_env:
        return from_env
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise CliError(
            "cannot tell who you are: give --by NAME or set SAGA_OPERATOR", EXIT_USAGE
        ) from None


def _add_definitions_option(parser: argparse.ArgumentParser) -> None:
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
        or parse_module_names(_env("SAGA_DEFINITIONS", "") or "")
        or [DEFAULT_DEFINITIONS_MODULE]
    )


def _load_definitions(flags: Sequence[str]) -> list[SagaDefinition]:
    make_working_directory_importable()
    return load_definitions(definition_modules(flags))


def _json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"print {what} as JSON (proto field names) and nothing else on stdout",
    )


def _client_options() -> argparse.ArgumentParser:
    """Options every command that talks to the orchestrator shares."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--address",
        default=_env("SAGA_ADDRESS", DEFAULT_LISTEN),
        help=f"orchestrator HOST:PORT (env SAGA_ADDRESS; default {DEFAULT_LISTEN})",
    )
    common.add_argument(
        "--timeout",
        type=_positive_float,
        default=_env("SAGA_TIMEOUT", str(CLIENT_TIMEOUT_SECONDS)),
        metavar="SECONDS",
        help="deadline of each call to the orchestrator "
        f"(env SAGA_TIMEOUT; default {CLIENT_TIMEOUT_SECONDS:g})",
    )
    return common


def _operator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason", required=True, help="why; recorded in the saga's transition log"
    )
    parser.add_argument(
        "--by",
        default=None,
        metavar="NAME",
        help="who asks, recorded in the log (default env SAGA_OPERATOR, else your login)",
    )


def _watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reconnect-timeout",
        type=_positive_float,
        default=_env("SAGA_WATCH_RECONNECT_TIMEOUT", str(WATCH_RECONNECT_SECONDS)),
        metavar="SECONDS",
        help="after losing the orchestrator, keep trying to get the stream back this long "
        "(env SAGA_WATCH_RECONNECT_TIMEOUT; default %(default)s)",
    )


def _serve_parser(commands: Any, *, full: bool) -> None:
    """`saga serve`'s options. Their defaults come from the engine, whose import (store
    drivers, telemetry) a client command should not wait for: with `full` False only
    the command's name is registered, enough for `saga --help` and for parsing others."""
    if not full:
        commands.add_parser("serve", help="run the orchestrator", add_help=False)
        return
    from orchestrator.executor import DEFAULT_LEASE_SECONDS
    from orchestrator.telemetry.tracing import TRACE_EXPORTERS

    serve_cmd = commands.add_parser("serve", help="run the orchestrator")
    serve_cmd.add_argument(
        "--database",
        default=_env("SAGA_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="postgresql://... or sqlite:///path (env SAGA_DATABASE_URL; "
        f"default {DEFAULT_DATABASE_URL})",
    )
    serve_cmd.add_argument(
        "--listen",
        default=_env("SAGA_LISTEN", DEFAULT_LISTEN),
        help=f"HOST:PORT to serve on, port 0 for any (env SAGA_LISTEN; default {DEFAULT_LISTEN})",
    )
    serve_cmd.add_argument(
        "--participant",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="a participant's address; repeatable, or comma-separated in env SAGA_PARTICIPANTS",
    )
    serve_cmd.add_argument(
        "--ready-file",
        default=_env("SAGA_READY_FILE"),
        help="write {address, pid} as JSON here once serving (env SAGA_READY_FILE)",
    )
    serve_cmd.add_argument(
        "--replica-id",
        default=_env("SAGA_REPLICA_ID"),
        help="this replica's lease owner id; must differ between live replicas "
        "(env SAGA_REPLICA_ID; default host:pid:random)",
    )
    serve_cmd.add_argument(
        "--lease-seconds",
        type=_positive_float,
        default=_env("SAGA_LEASE_SECONDS", str(DEFAULT_LEASE_SECONDS)),
        help="how long a replica's claim on a saga lasts without renewal; a dead "
        "replica's sagas are resumed by another after this "
        f"(env SAGA_LEASE_SECONDS; default {DEFAULT_LEASE_SECONDS:g})",
    )
    serve_cmd.add_argument(
        "--log-level",
        default=_env("SAGA_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (env SAGA_LOG_LEVEL; default INFO)",
    )
    serve_cmd.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        type=str.lower,
        default=_env("SAGA_LOG_FORMAT", "auto"),
        help="json (one object a line), text, or auto: JSON unless stderr is a terminal "
        "(env SAGA_LOG_FORMAT; default auto)",
    )
    serve_cmd.add_argument(
        "--metrics-listen",
        default=_env("SAGA_METRICS_LISTEN"),
        metavar="HOST:PORT",
        help="serve Prometheus metrics on this address, port 0 for any "
        "(env SAGA_METRICS_LISTEN; default off)",
    )
    serve_cmd.add_argument(
        "--trace-exporter",
        choices=TRACE_EXPORTERS,
        type=str.lower,
        default=_env("SAGA_TRACE_EXPORTER", "none"),
        help="where OpenTelemetry spans go: none, console (stdout, a JSON object per span) "
        "or otlp (OTEL_EXPORTER_OTLP_ENDPOINT) (env SAGA_TRACE_EXPORTER; default none)",
    )
    _add_definitions_option(serve_cmd)


def _describe_parser(commands: Any) -> None:
    describe_cmd = commands.add_parser(
        "describe",
        help="show a saga type's stages, steps, compensations and policies, or draw it",
    )
    describe_cmd.add_argument("saga_type")
    describe_cmd.add_argument(
        "--version", type=int, default=None, help="the definition version; default the latest"
    )
    shape = describe_cmd.add_mutually_exclusive_group()
    shape.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="text (default), mermaid (a flowchart) or dot (Graphviz); "
        "dot when --output ends in .png or .svg",
    )
    shape.add_argument(
        "--json",
        action="store_true",
        help="print the definition (steps, RPCs, policies, pivot) as JSON",
    )
    describe_cmd.add_argument(
        "--output",
        type=Path,
        default=None,
        help="write here instead of stdout; a .png or .svg is drawn by Graphviz's `dot`",
    )
    _add_definitions_option(describe_cmd)


def _build_parser(first: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; `first` is the first argument, when the caller has one."""
    parser = argparse.ArgumentParser(
        prog="saga",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(commands, full=first == "serve")
    commands.add_parser(
        "participants",
        help="run the example participant services (see `saga participants --help`)",
        add_help=False,
    )
    _describe_parser(commands)
    client = [_client_options()]

    start = commands.add_parser("start", parents=client, help="start a saga")
    start.add_argument("saga_type")
    start.add_argument("--payload", required=True, help="the saga input as a JSON object")
    start.add_argument("--correlation-id", required=True, help="the business object's id")
    start.add_argument(
        "--idempotency-key", default="", help="a repeated start with this key starts nothing"
    )
    start.add_argument(
        "--watch", action="store_true", help="then watch it to the end, like `saga watch`"
    )
    _watch_options(start)
    _json_option(start, "the answer (with --watch: one JSON object a line)")

    listing = commands.add_parser(
        "list",
        parents=client,
        help="list sagas, newest first",
        description="List sagas newest first, filtered; every filter narrows (AND).",
    )
    listing.add_argument("--status", type=str.lower, choices=sorted(SAGA_STATUSES))
    listing.add_argument("--type", dest="saga_type", default="", help="only this saga type")
    listing.add_argument("--correlation-id", default="", help="only this business object")
    listing.add_argument(
        "--needs-intervention",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only sagas an operator must (or, with --no-, need not) act on",
    )
    listing.add_argument(
        "--since",
        type=_point_in_time,
        help="created at or after: ISO 8601 (UTC unless it says) or a duration ago (1h, 2d)",
    )
    listing.add_argument(
        "--until", type=_point_in_time, help="created before: ISO 8601 or a duration ago"
    )
    listing.add_argument(
        "--limit",
        type=_list_limit,
        default=DEFAULT_LIST_LIMIT,
        help=f"sagas per page, 1 to {MAX_LIST_LIMIT} (default {DEFAULT_LIST_LIMIT})",
    )
    listing.add_argument("--page-token", default="", help="continue where a listing stopped")
    listing.add_argument("--all", action="store_true", help="follow every page to the end")
    listing.add_argument(
        "--wide", action="store_true", help="whole saga ids on a terminal (a pipe always has them)"
    )
    _json_option(listing, "the sagas (and next_page_token)")

    get = commands.add_parser("get", parents=client, help="show a saga and its steps")
    get.add_argument("saga_id", type=_saga_id)
    _json_option(get, "the saga")

    history = commands.add_parser(
        "history", parents=client, help="show a saga's transition log (its audit trail)"
    )
    history.add_argument("saga_id", type=_saga_id)
    _json_option(history, "the transitions")

    watch = commands.add_parser(
        "watch",
        parents=client,
        help="follow a saga live until it ends (exit 0 completed, 3 failed)",
        description="Follow a saga's transitions as they are committed, until it is COMPLETED "
        "(exit 0) or FAILED (exit 3). On a terminal the steps table updates in place; "
        "otherwise one line per transition. A lost connection is resumed from the last "
        "transition seen.",
    )
    watch.add_argument("saga_id", type=_saga_id)
    watch.add_argument(
        "--from-seq",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="show transitions after seq N (default 0: the whole log)",
    )
    _watch_options(watch)
    _json_option(watch, "each transition as one JSON object a line")

    for name, help_text in (
        ("abort", "stop a RUNNING saga and compensate what it completed"),
        ("retry", "resume a saga that needs intervention, with fresh attempts"),
        ("resolve", "record that a stuck step was finished by hand"),
    ):
        command = commands.add_parser(name, parents=client, help=help_text)
        command.add_argument("saga_id", type=_saga_id)
        if name == "resolve":
            command.add_argument("--step", required=True, help="the stuck step's name")
        _operator_options(command)
        _json_option(command, "the saga after the change")
    return parser


# --- output -------------------------------------------------------------------------------------


def _stdout_console() -> Console:
    """Colour and width from the terminal; no colour under NO_COLOR or in a pipe, where
    rows are never wrapped (COLUMNS still wins)."""
    console = Console(
        no_color=True if os.environ.get("NO_COLOR") else None,
        highlight=False,
        emoji=False,
        markup=False,
    )
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    return console


def _write_line(text: str) -> None:
    """One line on stdout now: a watching script must not wait for a buffer to fill."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _note(text: str) -> None:
    """Human remarks go to stderr, so stdout holds only the answer."""
    print(text, file=sys.stderr, flush=True)


def _table_width() -> int | None:
    """The terminal's width, which tables fit by dropping columns; None in a pipe."""
    console = _stdout_console()
    return console.width if console.is_terminal else None


def _show(renderable: RenderableType) -> None:
    """Print for a person; into a pipe without the padding rich leaves at line ends."""
    console = _stdout_console()
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    for line in captured.get().splitlines():
        _write_line(line.rstrip())


# --- talking to the orchestrator ----------------------------------------------------------------


class Client:
    """One channel to the orchestrator; every unary call carries the deadline."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.SagaOrchestratorStub(self._channel)

    def reconnect(self) -> None:
        """A fresh channel: a restarted server is found at once, not after gRPC's backoff."""
        self._channel.close()
        self._channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.SagaOrchestratorStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def get_saga(self, saga_id: str) -> pb.Saga:
        saga: pb.Saga = self.stub.GetSaga(pb.GetSagaRequest(saga_id=saga_id), timeout=self.timeout)
        return saga


def _has_error_info(error: grpc.RpcError) -> bool:
    """True when the orchestrator itself answered (its errors carry an ErrorInfo)."""
    try:
        metadata = error.trailing_metadata() or ()
    except Exception:
        return False
    return any(key == "grpc-status-details-bin" for key, _ in metadata)


def _connection_cause(details: str) -> str:
    lowered = details.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if any(
        words in lowered
        for words in ("dns resolution failed", "name or service not known", "domain name not found")
    ):
        return "the host name does not resolve"
    if "socket closed" in lowered or "connection reset" in lowered:
        return "the connection was closed"
    return details or "no answer"


def describe_rpc_error(error: grpc.RpcError, address: str, timeout: float) -> str:
    """What went wrong, in words that say what to do; never a traceback."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE and not _has_error_info(error):
        return (
            f"UNAVAILABLE: cannot reach the orchestrator at {address} "
            f"({_connection_cause(details)}); is `saga serve` running there? "
            "Point --address (env SAGA_ADDRESS) at it"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and not _has_error_info(error):
        return (
            f"DEADLINE_EXCEEDED: the orchestrator at {address} did not answer within "
            f"{timeout:g}s (--timeout, env SAGA_TIMEOUT); is --address (env SAGA_ADDRESS) right?"
        )
    return f"{code.name}: {details}"


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def list_request(args: argparse.Namespace, page_token: str) -> pb.ListSagasRequest:
    """The ListSagas request the `saga list` flags ask for."""
    request = pb.ListSagasRequest(
        page_size=args.limit,
        page_token=page_token,
        status=SAGA_STATUSES[args.status] if args.status else pb.SAGA_STATUS_UNSPECIFIED,
        saga_type=args.saga_type,
        correlation_id=args.correlation_id,
    )
    if args.needs_intervention is not None:
        request.needs_intervention = args.needs_intervention
    if args.since is not None:
        request.create_time_after.CopyFrom(_timestamp(args.since))
    if args.until is not None:
        request.create_time_before.CopyFrom(_timestamp(args.until))
    return request


# --- commands -----------------------------------------------------------------------------------


def _list(args: argparse.Namespace, client: Client) -> int:
    sagas: list[pb.Saga] = []
    token = args.page_token
    while True:
        page = client.stub.ListSagas(list_request(args, token), timeout=client.timeout)
        sagas.extend(page.sagas)
        token = page.next_page_token
        if not token or not args.all:
            break
    if args.json:
        _write_line(view.to_json(pb.ListSagasResponse(sagas=sagas, next_page_token=token)))
        return EXIT_OK
    if not sagas:
        _note("no sagas found")
    else:
        width = _table_width()
        short_ids = width is not None and not args.wide
        _show(view.sagas_table(sagas, now=utc_now(), short_ids=short_ids, width=width))
    if token:
        _note(f"more sagas follow: add --page-token {token} (same filters), or use --all")
    return EXIT_OK


def _get(args: argparse.Namespace, client: Client) -> int:
    saga = client.get_saga(args.saga_id)
    if args.json:
        _write_line(view.to_json(saga))
    else:
        _show(view.saga_view(saga, now=utc_now(), width=_table_width()))
    return EXIT_OK


def _history(args: argparse.Namespace, client: Client) -> int:
    transitions: list[pb.Transition] = []
    token = ""
    while True:
        page = client.stub.GetSagaHistory(
            pb.GetSagaHistoryRequest(saga_id=args.saga_id, page_token=token),
            timeout=client.timeout,
        )
        transitions.extend(page.transitions)
        token = page.next_page_token
        if not token:
            break
    if args.json:
        _write_line(view.to_json(pb.GetSagaHistoryResponse(transitions=transitions)))
    else:
        _show(view.history_table(transitions, width=_table_width()))
    return EXIT_OK


def follow_transitions(
    client: Client,
    saga_id: str,
    after_seq: int,
    *,
    reconnect_for: float,
    on_transition: Callable[[pb.Transition], None],
    on_notice: Callable[[str], None],
) -> int:
    """Stream the saga's transitions after `after_seq` until it is COMPLETED or FAILED, and
    return that status. A lost stream is reopened after the last seq seen (with backoff,
    for at most `reconnect_for` seconds of trying), so nothing is missed or repeated."""
    last = after_seq
    lost_since: float | None = None
    failures = 0
    while True:
        try:
            if lost_since is not None:
                client.get_saga(saga_id)  # are we back? (under the call deadline)
                lost_since, failures = None, 0
                on_notice("")
            final: int | None = None
            stream = client.stub.WatchSaga(pb.WatchSagaRequest(saga_id=saga_id, after_seq=last))
            for response in stream:
                row = response.transition
                if row.seq <= last:
                    continue
                last = row.seq
                on_transition(row)
                if row.saga_status in view.TERMINAL_SAGA_STATUSES:
                    final = row.saga_status
            if final is not None:
                return final
            saga = client.get_saga(saga_id)
            if saga.status in view.TERMINAL_SAGA_STATUSES:
                return int(saga.status)
            cause = "the stream ended before the saga did"
        except grpc.RpcError as error:
            if error.code() not in RECONNECT_CODES:
                raise
            cause = describe_rpc_error(error, client.address, client.timeout)
        now = time.monotonic()
        lost_since = now if lost_since is None else lost_since
        if now - lost_since >= reconnect_for:
            raise CliError(
                f"lost the orchestrator at {client.address} and could not get the stream back "
                f"within {reconnect_for:g}s ({cause}); continue with "
                f"`saga watch {saga_id} --from-seq {last}` once it is back "
                "(--address, env SAGA_ADDRESS)"
            )
        failures += 1
        delay = min(RECONNECT_MAX_BACKOFF, RECONNECT_FIRST_BACKOFF * 2 ** (failures - 1))
        on_notice(f"connection lost ({cause}); reconnecting after seq {last} in {delay:g}s")
        time.sleep(delay)
        client.reconnect()


def _exit_code_of(status: int) -> int:
    return EXIT_OK if status == pb.SAGA_STATUS_COMPLETED else EXIT_SAGA_FAILED


def watch_saga(
    client: Client, saga_id: str, *, from_seq: int, as_json: bool, reconnect_for: float
) -> int:
    """`saga watch`: live on a terminal, one line (or JSON object) per transition otherwise."""
    saga = client.get_saga(saga_id)  # NOT_FOUND and an unreachable server fail here, at once
    console = _stdout_console()
    if as_json or not console.is_terminal:
        render = (
            (lambda row: _write_line(view.to_json(row, indent=None)))
            if as_json
            else (lambda row: _write_line(view.transition_line(row)))
        )
        status = follow_transitions(
            client,
            saga_id,
            from_seq,
            reconnect_for=reconnect_for,
            on_transition=render,
            on_notice=lambda text: _note(f"saga watch: {text}") if text else None,
        )
        return _exit_code_of(status)

    # On a terminal the table shows every step, so the state is replayed from seq 1;
    # --from-seq only limits the events listed under it.
    state = view.WatchState.of(saga, show_after_seq=from_seq)
    lock = threading.Lock()

    def apply(row: pb.Transition) -> None:
        with lock:
            state.apply(row)

    def notice(text: str) -> None:
        with lock:
            state.notice = text

    def picture() -> RenderableType:
        with lock:
            return view.watch_view(state, now=utc_now(), width=console.width)

    with Live(get_renderable=picture, console=console, refresh_per_second=8) as live:
        status = follow_transitions(
            client, saga_id, 0, reconnect_for=reconnect_for, on_transition=apply, on_notice=notice
        )
        live.refresh()
    return _exit_code_of(status)


def _watch(args: argparse.Namespace, client: Client) -> int:
    return watch_saga(
        client,
        args.saga_id,
        from_seq=args.from_seq,
        as_json=args.json,
        reconnect_for=args.reconnect_timeout,
    )


def _start(args: argparse.Namespace, client: Client) -> int:
    try:
        payload_dict = json.loads(args.payload)
    except json.JSONDecodeError as error:
        raise CliError(f"--payload is not valid JSON: {error}", EXIT_USAGE) from None
    if not isinstance(payload_dict, dict):
        raise CliError("--payload must be a JSON object", EXIT_USAGE)
    payload = struct_pb2.Struct()
    payload.update(payload_dict)
    reply = client.stub.StartSaga(
        pb.StartSagaRequest(
            saga_type=args.saga_type,
            correlation_id=args.correlation_id,
            payload=payload,
            idempotency_key=args.idempotency_key,
        ),
        timeout=client.timeout,
    )
    if args.json:
        _write_line(view.to_json(reply, indent=None if args.watch else 2))
    else:
        status = view.saga_status_name(reply.status)
        if reply.created:
            text = f"started saga {reply.saga_id} ({args.saga_type}): {status}"
        else:
            text = f"saga {reply.saga_id} was already started with this idempotency key: {status}"
        _show(Text(text))
    if not args.watch:
        return EXIT_OK
    return watch_saga(
        client, reply.saga_id, from_seq=0, as_json=args.json, reconnect_for=args.reconnect_timeout
    )


def _operator_call(args: argparse.Namespace, client: Client) -> int:
    """abort, retry, resolve: one call each, recorded with who asked and why."""
    by = operator_name(args.by)
    if args.command == "abort":
        saga = client.stub.AbortSaga(
            pb.AbortSagaRequest(saga_id=args.saga_id, reason=args.reason, requested_by=by),
            timeout=client.timeout,
        ).saga
        done = "aborted"
    elif args.command == "retry":
        saga = client.stub.RetrySaga(
            pb.RetrySagaRequest(saga_id=args.saga_id, reason=args.reason, requested_by=by),
            timeout=client.timeout,
        ).saga
        done = "retried"
    else:
        saga = client.stub.ResolveStep(
            pb.ResolveStepRequest(
                saga_id=args.saga_id, step=args.step, reason=args.reason, requested_by=by
            ),
            timeout=client.timeout,
        ).saga
        done = f"step {args.step} resolved"
    if args.json:
        _write_line(view.to_json(saga))
        return EXIT_OK
    summary = Text(f"{done} by {by}: saga {saga.saga_id} is now ")
    summary.append_text(view.saga_status_text(saga))
    _show(summary)
    _show(view.saga_view(saga, now=utc_now(), width=_table_width()))
    return EXIT_OK


CLIENT_COMMANDS: dict[str, Callable[[argparse.Namespace, Client], int]] = {
    "start": _start,
    "list": _list,
    "get": _get,
    "history": _history,
    "watch": _watch,
    "abort": _operator_call,
    "retry": _operator_call,
    "resolve": _operator_call,
}


def _client_command(args: argparse.Namespace) -> int:
    client = Client(args.address, args.timeout)
    try:
        return CLIENT_COMMANDS[args.command](args, client)
    except grpc.RpcError as error:
        raise CliError(describe_rpc_error(error, args.address, args.timeout)) from None
    finally:
        client.close()


# --- describe and serve -------------------------------------------------------------------------


def render_image(dot_source: str, output: Path) -> None:
    """Draw Graphviz text into a .png or .svg with the `dot` program, which must be on PATH."""
    dot = shutil.which("dot")
    if dot is None:
        raise ConfigurationError(
            f"drawing {output.name} needs Graphviz, and its `dot` program is not on PATH "
            "(install graphviz, e.g. `apt-get install graphviz` or `brew install graphviz`), "
            "or write the diagram as text with --format dot or --format mermaid"
        )
    try:
        subprocess.run(
            [dot, f"-T{IMAGE_FORMATS[output.suffix.lower()]}", "-o", str(output)],
            input=dot_source,
            text=True,
            capture_output=True,
            check=True,
            timeout=GRAPHVIZ_TIMEOUT_SECONDS,
        )
    except subprocess.CalledProcessError as error:
        raise ConfigurationError(f"dot failed to draw {output}: {error.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise ConfigurationError(
            f"dot did not draw {output} within {GRAPHVIZ_TIMEOUT_SECONDS:g}s"
        ) from None


def _describe(args: argparse.Namespace) -> int:
    """`saga describe`: the definition as registered, so load-time checks apply here too."""
    try:
        registry = Registry(_load_definitions(args.definitions))
        definition = (
            registry.latest(args.saga_type)
            if args.version is None
            else registry.get(args.saga_type, args.version)
        )
        output: Path | None = args.output
        image = output is not None and output.suffix.lower() in IMAGE_FORMATS
        if args.json:
            if image:
                raise ConfigurationError(f"--json writes text; name a .json file, not {output}")
            text = json.dumps(view.definition_document(definition), indent=2) + "\n"
        else:
            output_format = args.format or ("dot" if image else "text")
            if image and output_format != "dot":
                raise ConfigurationError(
                    f"an image is drawn from Graphviz text; use --format dot (or no --format) "
                    f"for {output}, or write {output_format} text to another file name"
                )
            text = describe(definition, output_format)
        if output is None:
            print(text, end="")
        elif image:
            render_image(text, output)
        else:
            output.write_text(text)
    except (SagaError, ValueError, OSError) as error:
        print(f"saga describe: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from orchestrator.server import ServeConfig, serve

    try:
        configure_logging(args.log_level.upper(), args.log_format)
        addresses = parse_participants(_env("SAGA_PARTICIPANTS", "") or "")
        for entry in args.participant:
            addresses.update(parse_participants(entry))
        config = ServeConfig(
            database_url=args.database,
            listen=args.listen,
            participants=addresses,
            ready_file=args.ready_file,
            lease_seconds=args.lease_seconds,
            metrics_listen=args.metrics_listen or None,
            log_format=args.log_format,
            trace_exporter=args.trace_exporter,
            **({"replica_id": args.replica_id} if args.replica_id else {}),
        )
        asyncio.run(serve(config, _load_definitions(args.definitions)))
    except (SagaError, ValueError, OSError) as error:
        print(f"saga serve: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# --- entry point --------------------------------------------------------------------------------


def _quiet_broken_pipe() -> NoReturn:
    """`saga list | head`: the reader left; say nothing, and let Python's exit not
    complain about flushing into the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(EXIT_BROKEN_PIPE)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `saga` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "participants":
        from participants.__main__ import main as participants_main

        return int(participants_main(argv[1:]))
    args = _build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "describe":
            return _describe(args)
        return _client_command(args)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_broken_pipe()


if __name__ == "__main__":
    sys.exit(main())
