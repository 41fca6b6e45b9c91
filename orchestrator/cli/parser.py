"""The `saga` command line: every subcommand and option, with its environment variable."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from orchestrator.cli.bulk import add_bulk_options
from orchestrator.cli.diagrams import FORMATS
from orchestrator.cli.events import events_parser
from orchestrator.cli.options import (
    DEFAULT_DATABASE_URL,
    DEFAULT_LIST_LIMIT,
    DEFAULT_LISTEN,
    MAX_LIST_LIMIT,
    SAGA_STATUSES,
    add_definitions_option,
    client_options,
    console_security_options,
    duration_argument,
    env_or,
    events_options,
    json_option,
    list_limit,
    non_negative_int,
    operator_options,
    point_in_time,
    positive_float,
    positive_int,
    saga_id_argument,
    server_security_options,
    watch_options,
)
from orchestrator.cli.serve import tracked_serve_options
from orchestrator.cli.task_commands import add_task_commands
from orchestrator.cli.webhooks import add_webhooks_parser, webhook_serve_options
from orchestrator.events.ingest.config import add_ingest_flags
from orchestrator.telemetry.logs import LOG_FORMATS

DESCRIPTION = """The `saga` command: serve the orchestrator, run the example participants, start,
list, inspect, watch and steer sagas, and describe a saga type's definition.

Every option also reads an environment variable (named in --help), so the same
settings work from a shell, a container or a test. Client commands print tables
for people and, with --json, the API's own JSON and nothing else for scripts.

Exit codes: 0 success; 1 an error (the server's answer, or no server); 2 a usage
error; 3 `saga watch` (or `start --watch`) saw the saga end FAILED; 130 interrupted.
"""


def _serve_parser(commands: Any, *, full: bool) -> None:
    """`saga serve`'s options. Their defaults come from the engine, whose import (store
    drivers, telemetry) a client command should not wait for: with `full` False only
    the command's name is registered, enough for `saga --help` and for parsing others."""
    if not full:
        commands.add_parser("serve", help="run the orchestrator", add_help=False)
        return
    from orchestrator.engine.leases import DEFAULT_LEASE_SECONDS
    from orchestrator.telemetry.tracing import TRACE_EXPORTERS

    serve_cmd = commands.add_parser("serve", help="run the orchestrator")
    serve_cmd.add_argument(
        "--database",
        default=env_or("SAGA_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="postgresql://... or sqlite:///path (env SAGA_DATABASE_URL; "
        f"default {DEFAULT_DATABASE_URL})",
    )
    serve_cmd.add_argument(
        "--listen",
        default=env_or("SAGA_LISTEN", DEFAULT_LISTEN),
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
        default=env_or("SAGA_READY_FILE"),
        help="write {address, pid} as JSON here once serving (env SAGA_READY_FILE)",
    )
    serve_cmd.add_argument(
        "--replica-id",
        default=env_or("SAGA_REPLICA_ID"),
        help="this replica's lease owner id; must differ between live replicas "
        "(env SAGA_REPLICA_ID; default host:pid:random)",
    )
    serve_cmd.add_argument(
        "--lease-seconds",
        type=positive_float,
        default=env_or("SAGA_LEASE_SECONDS", str(DEFAULT_LEASE_SECONDS)),
        help="how long a replica's claim on a saga lasts without renewal; a dead "
        "replica's sagas are resumed by another after this "
        f"(env SAGA_LEASE_SECONDS; default {DEFAULT_LEASE_SECONDS:g})",
    )
    serve_cmd.add_argument(
        "--log-level",
        default=env_or("SAGA_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (env SAGA_LOG_LEVEL; default INFO)",
    )
    serve_cmd.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        type=str.lower,
        default=env_or("SAGA_LOG_FORMAT", "auto"),
        help="json (one object a line), text, or auto: JSON unless stderr is a terminal "
        "(env SAGA_LOG_FORMAT; default auto)",
    )
    serve_cmd.add_argument(
        "--metrics-listen",
        default=env_or("SAGA_METRICS_LISTEN"),
        metavar="HOST:PORT",
        help="serve Prometheus metrics on this address, port 0 for any "
        "(env SAGA_METRICS_LISTEN; default off)",
    )
    serve_cmd.add_argument(
        "--http-listen",
        default=env_or("SAGA_HTTP_LISTEN"),
        metavar="HOST:PORT",
        help="serve the operators' web console on this address, port 0 for any "
        "(env SAGA_HTTP_LISTEN; default off)",
    )
    serve_cmd.add_argument(
        "--trace-exporter",
        choices=TRACE_EXPORTERS,
        type=str.lower,
        default=env_or("SAGA_TRACE_EXPORTER", "none"),
        help="where OpenTelemetry spans go: none, console (stdout, a JSON object per span) "
        "or otlp (OTEL_EXPORTER_OTLP_ENDPOINT) (env SAGA_TRACE_EXPORTER; default none)",
    )
    _limit_options(serve_cmd)
    add_definitions_option(serve_cmd)
    server_security_options(serve_cmd, "SAGA_")
    console_security_options(serve_cmd)
    serve_cmd.add_argument(
        "--participants-tls-ca",
        default=env_or("SAGA_PARTICIPANTS_TLS_CA"),
        metavar="FILE",
        help="connect to participants with TLS, verifying them with this CA "
        "(env SAGA_PARTICIPANTS_TLS_CA; default plaintext)",
    )
    serve_cmd.add_argument(
        "--participants-tls-cert",
        default=env_or("SAGA_PARTICIPANTS_TLS_CERT"),
        metavar="FILE",
        help="the orchestrator's client certificate for participants that require mutual "
        "TLS (env SAGA_PARTICIPANTS_TLS_CERT)",
    )
    serve_cmd.add_argument(
        "--participants-tls-key",
        default=env_or("SAGA_PARTICIPANTS_TLS_KEY"),
        metavar="FILE",
        help="the key of --participants-tls-cert (env SAGA_PARTICIPANTS_TLS_KEY)",
    )
    serve_cmd.add_argument(
        "--participants-token-file",
        default=env_or("SAGA_PARTICIPANTS_TOKEN_FILE"),
        metavar="FILE",
        help="a file holding the bearer token sent with every command to participants "
        "(env SAGA_PARTICIPANTS_TOKEN_FILE; default none)",
    )


def _limit_options(serve_cmd: argparse.ArgumentParser) -> None:
    """`saga serve`'s limits and pool: each a flag and an environment variable
    (docs/limits.md says how to size them)."""
    from orchestrator.core import limits
    from orchestrator.store import postgres

    whole = [
        (
            "--max-payload-bytes",
            "SAGA_MAX_PAYLOAD_BYTES",
            limits.DEFAULT_MAX_PAYLOAD_BYTES,
            "largest StartSaga payload, encoded",
        ),
        (
            "--max-payload-depth",
            "SAGA_MAX_PAYLOAD_DEPTH",
            limits.DEFAULT_MAX_PAYLOAD_DEPTH,
            "deepest nesting of objects and lists in a payload",
        ),
        (
            "--max-watch-streams",
            "SAGA_MAX_WATCH_STREAMS",
            limits.DEFAULT_MAX_WATCH_STREAMS,
            "WatchSaga streams and waiting ExecuteSaga calls at once on this replica",
        ),
        (
            "--max-sagas-in-flight",
            "SAGA_MAX_SAGAS_IN_FLIGHT",
            limits.DEFAULT_MAX_SAGAS_IN_FLIGHT,
            "sagas driven at once, new and resumed; StartSaga past it is refused",
        ),
        (
            "--max-batch-starts",
            "SAGA_MAX_BATCH_STARTS",
            limits.DEFAULT_MAX_BATCH_STARTS,
            "requests in one StartSagas call; a longer batch is refused",
        ),
        (
            "--db-pool-min-size",
            "SAGA_DB_POOL_MIN_SIZE",
            postgres.DEFAULT_POOL_MIN_SIZE,
            "PostgreSQL connections kept open",
        ),
        (
            "--db-pool-size",
            "SAGA_DB_POOL_SIZE",
            postgres.DEFAULT_POOL_MAX_SIZE,
            "most PostgreSQL connections this replica opens",
        ),
    ]
    for flag, env, default, what in whole:
        serve_cmd.add_argument(
            flag,
            type=positive_int,
            default=env_or(env, str(default)),
            metavar="N",
            help=f"{what} (env {env}; default {default})",
        )
    events_options(serve_cmd)
    webhook_serve_options(serve_cmd)
    tracked_serve_options(serve_cmd)
    add_ingest_flags(serve_cmd)
    serve_cmd.add_argument(
        "--retention",
        type=duration_argument,
        default=env_or("SAGA_RETENTION"),
        metavar="DURATION",
        help="delete finished sagas this long after their last change, e.g. 30d; never "
        "those needing intervention (env SAGA_RETENTION; default off: keep everything)",
    )
    serve_cmd.add_argument(
        "--db-timeout",
        type=positive_float,
        default=env_or("SAGA_DB_TIMEOUT", str(postgres.DEFAULT_POOL_TIMEOUT_SECONDS)),
        metavar="SECONDS",
        help="how long a unit of work waits for a PostgreSQL connection "
        f"(env SAGA_DB_TIMEOUT; default {postgres.DEFAULT_POOL_TIMEOUT_SECONDS:g})",
    )


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
    describe_cmd.add_argument(
        "--address",
        default=None,
        help="ask the orchestrator at HOST:PORT for its catalogue (ListSagaTypes) instead "
        "of loading definition modules here; prints text or --json",
    )
    add_definitions_option(describe_cmd)


def build_parser(first: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; `first` is the first argument, when the caller has one."""
    parser = argparse.ArgumentParser(
        prog="saga",
        description=DESCRIPTION,
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
    client = [client_options()]

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
    watch_options(start)
    json_option(start, "the answer (with --watch: one JSON object a line)")

    many = commands.add_parser(
        "start-many",
        parents=client,
        help="start sagas from a JSON-lines file, in StartSagas batches",
        description="Start one saga per line of FILE ('-' for stdin): each line is a "
        "StartSagaRequest as JSON (saga_type, correlation_id, payload or input, "
        "idempotency_key). Lines are sent in StartSagas batches as they are read, and one "
        "JSON line per input line is printed in order: the saga (saga_id, status, created) "
        "or its error (code, message, reason). Exit 0 when every line started (or was "
        "already started), 1 when any was refused. Give every line an idempotency key and "
        "a file can be sent again after a failure without starting anything twice.",
    )
    many.add_argument(
        "file",
        type=argparse.FileType("r", encoding="utf-8"),
        metavar="FILE",
        help="the JSON-lines file, or - for stdin",
    )
    many.add_argument(
        "--type",
        dest="saga_type",
        default="",
        help="the saga type of lines that name none",
    )
    many.add_argument(
        "--batch-size",
        type=positive_int,
        default=500,
        metavar="N",
        help="requests per StartSagas call, at most the server's --max-batch-starts (default 500)",
    )

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
        "--lock-key", default="", help="only sagas that hold or queue for this lock key"
    )
    listing.add_argument(
        "--needs-intervention",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only sagas an operator must (or, with --no-, need not) act on",
    )
    listing.add_argument(
        "--since",
        type=point_in_time,
        help="created at or after: ISO 8601 (UTC unless it says) or a duration ago (1h, 2d)",
    )
    listing.add_argument(
        "--until", type=point_in_time, help="created before: ISO 8601 or a duration ago"
    )
    listing.add_argument(
        "--limit",
        type=list_limit,
        default=DEFAULT_LIST_LIMIT,
        help=f"sagas per page, 1 to {MAX_LIST_LIMIT} (default {DEFAULT_LIST_LIMIT})",
    )
    listing.add_argument("--page-token", default="", help="continue where a listing stopped")
    listing.add_argument("--all", action="store_true", help="follow every page to the end")
    listing.add_argument(
        "--wide", action="store_true", help="whole saga ids on a terminal (a pipe always has them)"
    )
    json_option(listing, "the sagas (and next_page_token)")

    get = commands.add_parser("get", parents=client, help="show a saga and its steps")
    get.add_argument("saga_id", type=saga_id_argument)
    json_option(get, "the saga")

    history = commands.add_parser(
        "history", parents=client, help="show a saga's transition log (its audit trail)"
    )
    history.add_argument("saga_id", type=saga_id_argument)
    json_option(history, "the transitions")

    watch = commands.add_parser(
        "watch",
        parents=client,
        help="follow a saga live until it ends (exit 0 completed, 3 failed)",
        description="Follow a saga's transitions as they are committed, until it is COMPLETED "
        "(exit 0) or FAILED (exit 3). On a terminal the steps table updates in place; "
        "otherwise one line per transition. A lost connection is resumed from the last "
        "transition seen.",
    )
    watch.add_argument("saga_id", type=saga_id_argument)
    watch.add_argument(
        "--from-seq",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="show transitions after seq N (default 0: the whole log)",
    )
    watch_options(watch)
    json_option(watch, "each transition as one JSON object a line")

    for name, help_text in (
        ("abort", "stop a RUNNING saga and compensate what it completed"),
        ("retry", "resume a saga that needs intervention, with fresh attempts"),
        ("resolve", "record that a stuck step was finished by hand"),
        ("break-lock", "take a saga's lock keys away so the sagas queued behind it go on"),
    ):
        command = commands.add_parser(name, parents=client, help=help_text)
        if name == "break-lock":
            command.add_argument("saga_id", type=saga_id_argument)
        else:
            command.add_argument("saga_id", type=saga_id_argument, nargs="?")
            add_bulk_options(command)
        if name == "resolve":
            command.add_argument("--step", required=True, help="the stuck step's name")
        operator_options(command)
        json_option(command, "the saga after the change")
    add_webhooks_parser(commands, client)
    events_parser(commands, client)
    add_task_commands(commands, client)
    return parser
