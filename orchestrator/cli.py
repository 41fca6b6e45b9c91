"""The `saga` command: serve the orchestrator, run the example participants, start and
inspect sagas.

Every option also reads an environment variable (named in --help), so the same
settings work from a shell, a container or a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

import grpc
from google.protobuf import json_format, struct_pb2

from orchestrator.errors import SagaError
from orchestrator.examples import DEFINITIONS
from orchestrator.server import ServeConfig, serve
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc

DEFAULT_DATABASE_URL = "sqlite:///.saga/saga.sqlite3"
DEFAULT_LISTEN = "127.0.0.1:50051"
CLIENT_TIMEOUT_SECONDS = 10.0


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
    serve_cmd.add_argument("--log-level", default=_env("SAGA_LOG_LEVEL", "INFO"))

    commands.add_parser(
        "participants",
        help="run the example participant services (see `saga participants --help`)",
        add_help=False,
    )

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
            )
            asyncio.run(serve(config, DEFINITIONS))
        except (SagaError, ValueError, OSError) as error:
            print(f"saga serve: {error}", file=sys.stderr)
            return 2
        return 0
    try:
        return _client_call(args)
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
