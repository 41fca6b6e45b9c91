"""`saga tasks`, `saga complete` and `saga reject`: people deciding asynchronous steps
(human tasks) through SagaTasks, recorded in the saga's log with who decided and why."""

from __future__ import annotations

import argparse
import json
from typing import Any

import grpc
from google.protobuf import json_format
from rich.table import Table

from orchestrator.cli.options import (
    EXIT_OK,
    json_option,
    operator_name,
    operator_options,
    saga_id_argument,
)
from orchestrator.cli.output import show, write_line
from orchestrator.client import ClientError, SagaClient
from orchestrator.client.errors import client_error
from saga.v1 import tasks_pb2 as pb
from saga.v1 import tasks_pb2_grpc as pb_grpc


def _stub(client: SagaClient) -> pb_grpc.SagaTasksStub:
    channel = client.channel
    if channel is None:
        raise ClientError("this client has no channel of its own for SagaTasks")
    return pb_grpc.SagaTasksStub(channel)


async def tasks_command(args: argparse.Namespace, client: SagaClient) -> int:
    """List the waiting steps, the longest waiting first."""
    try:
        reply = await _stub(client).ListTasks(
            pb.ListTasksRequest(page_size=args.limit, namespace=client.namespace or ""),
            timeout=client.timeout,
        )
    except grpc.RpcError as error:
        raise client_error(error, client.address, client.timeout) from None
    if args.json:
        for task in reply.tasks:
            write_line(json.dumps(json_format.MessageToDict(task), sort_keys=True))
        return EXIT_OK
    table = Table("saga", "type", "step", "waiting since", "deadline", "result type")
    for task in reply.tasks:
        table.add_row(
            task.saga_id,
            task.saga_type,
            task.step,
            task.waiting_since.ToDatetime().isoformat(timespec="seconds"),
            task.wait_deadline.ToDatetime().isoformat(timespec="seconds"),
            task.result_type,
        )
    show(table if reply.tasks else "no step is waiting")
    return EXIT_OK


async def decide_command(args: argparse.Namespace, client: SagaClient) -> int:
    """Complete (approve) or reject one waiting step."""
    by = operator_name(args.by)
    stub = _stub(client)
    try:
        if args.command == "complete":
            await stub.CompleteTask(
                pb.CompleteTaskRequest(
                    saga_id=args.saga_id,
                    step=args.step,
                    result_json=args.result,
                    reason=args.reason,
                    requested_by=by,
                    namespace=client.namespace or "",
                ),
                timeout=client.timeout,
            )
        else:
            await stub.RejectTask(
                pb.RejectTaskRequest(
                    saga_id=args.saga_id,
                    step=args.step,
                    reason=args.reason,
                    requested_by=by,
                    namespace=client.namespace or "",
                ),
                timeout=client.timeout,
            )
    except grpc.RpcError as error:
        raise client_error(error, client.address, client.timeout) from None
    done = "completed" if args.command == "complete" else "rejected"
    show(f"step {args.step} of saga {args.saga_id} {done} by {by}")
    return EXIT_OK


def add_task_commands(commands: Any, client: list[argparse.ArgumentParser]) -> None:
    """The three commands (on the parser's subcommands), with the client options."""

    tasks = commands.add_parser(
        "tasks", parents=client, help="list the waiting steps people decide (human tasks)"
    )
    tasks.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    json_option(tasks, "each task as one JSON object a line")
    for name, help_text in (
        ("complete", "approve a waiting step, with its result as JSON"),
        ("reject", "reject a waiting step: the saga compensates"),
    ):
        command = commands.add_parser(name, parents=client, help=help_text)
        command.add_argument("saga_id", type=saga_id_argument)
        command.add_argument("step", help="the waiting step's name")
        if name == "complete":
            command.add_argument(
                "--result",
                default="{}",
                metavar="JSON",
                help="the step's result as JSON of its result type (default {})",
            )
        operator_options(command)
