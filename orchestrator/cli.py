"""The `saga` command: serve the orchestrator, run the example participants, start and
inspect sagas, and describe a saga type's definition.

Every option also reads an environment variable (named in --help), so the same
settings work from a shell, a container or a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from google.protobuf import json_format, struct_pb2

from orchestrator.definition import SagaDefinition
from orchestrator.describe import FORMATS, describe
from orchestrator.errors import ConfigurationError, SagaError
from orchestrator.executor import DEFAULT_LEASE_SECONDS
from orchestrator.loading import (
    DEFAULT_DEFINITIONS_MODULE,
    load_definitions,
    make_working_directory_importable,
    parse_module_names,
)
from orchestrator.registry import Registry
from orchestrator.server import ServeConfig, serve
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc

DEFAULT_DATABASE_URL = "sqlite:///.saga/saga.sqlite3"
DEFAULT_LISTEN = "127.0.0.1:50051"
CLIENT_TIMEOUT_SECONDS = 10.0
IMAGE_FORMATS = {".png": "png", ".svg": "svg"}
"""Output suffixes `saga describe --output` renders with Graphviz's `dot`."""
GRAPHVIZ_TIMEOUT_SECONDS = 60.0


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


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saga", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

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
        type=float,
        default=float(_env("SAGA_LEASE_SECONDS", str(DEFAULT_LEASE_SECONDS)) or 0),
        help="how long a replica's claim on a saga lasts without renewal; a dead "
        "replica's sagas are resumed by another after this "
        f"(env SAGA_LEASE_SECONDS; default {DEFAULT_LEASE_SECONDS:g})",
    )
    serve_cmd.add_argument("--log-level", default=_env("SAGA_LOG_LEVEL", "INFO"))
    _add_definitions_option(serve_cmd)

    commands.add_parser(
        "participants",
        help="run the example participant services (see `saga participants --help`)",
        add_help=False,
    )

    describe_cmd = commands.add_parser(
        "describe",
        help="show a saga type's stages, steps, compensations and policies, or draw it",
    )
    describe_cmd.add_argument("saga_type")
    describe_cmd.add_argument(
        "--version", type=int, default=None, help="the definition version; default the latest"
    )
    describe_cmd.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="text (default), mermaid (a flowchart) or dot (Graphviz); "
        "dot when --output ends in .png or .svg",
    )
    describe_cmd.add_argument(
        "--output",
        type=Path,
        default=None,
        help="write here instead of stdout; a .png or .svg is drawn by Graphviz's `dot`",
    )
    _add_definitions_option(describe_cmd)

    for name, help_text in (("start", "start a saga"), ("get", "show a saga")):
        client = commands.add_parser(name, help=help_text)
        client.add_argument(
            "--address",
            default=_env("SAGA_ADDRESS", DEFAULT_LISTEN),
            help=f"orchestrator HOST:PORT (env SAGA_ADDRESS; default {DEFAULT_LISTEN})",
        )
        if name == "start":
            client.add_argument("saga_type")
            client.add_argument("--payload", required=True, help="the saga input as JSON")
            client.add_argument("--correlation-id", required=True)
            client.add_argument("--idempotency-key", default="")
        else:
            client.add_argument("saga_id")
    return parser


def _client_call(args: argparse.Namespace) -> int:
    with grpc.insecure_channel(args.address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        if args.command == "start":
            try:
                payload_dict = json.loads(args.payload)
            except json.JSONDecodeError as error:
                print(f"error: --payload is not valid JSON: {error}", file=sys.stderr)
                return 2
            if not isinstance(payload_dict, dict):
                print("error: --payload must be a JSON object", file=sys.stderr)
                return 2
            payload = struct_pb2.Struct()
            payload.update(payload_dict)
            reply = stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type=args.saga_type,
                    correlation_id=args.correlation_id,
                    payload=payload,
                    idempotency_key=args.idempotency_key,
                ),
                timeout=CLIENT_TIMEOUT_SECONDS,
            )
        else:
            reply = stub.GetSaga(
                pb.GetSagaRequest(saga_id=args.saga_id), timeout=CLIENT_TIMEOUT_SECONDS
            )
    print(json_format.MessageToJson(reply, preserving_proto_field_name=True))
    return 0


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
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `saga` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "participants":
        from participants.__main__ import main as participants_main

        return int(participants_main(argv[1:]))
    args = _build_parser().parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )
        try:
            addresses = parse_participants(_env("SAGA_PARTICIPANTS", "") or "")
            for entry in args.participant:
                addresses.update(parse_participants(entry))
            config = ServeConfig(
                database_url=args.database,
                listen=args.listen,
                participants=addresses,
                ready_file=args.ready_file,
                lease_seconds=args.lease_seconds,
                **({"replica_id": args.replica_id} if args.replica_id else {}),
            )
            asyncio.run(serve(config, _load_definitions(args.definitions)))
        except (SagaError, ValueError, OSError) as error:
            print(f"saga serve: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "describe":
        return _describe(args)
    try:
        return _client_call(args)
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
