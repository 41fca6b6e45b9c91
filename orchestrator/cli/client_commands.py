"""The `saga` commands that talk to a running orchestrator: start, list, get, history,
watch, and the operator's abort, retry and resolve. Each runs on one channel, with the
deadline of --timeout on every unary call; `watch` follows the WatchSaga stream."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import RenderableType
from rich.live import Live
from rich.text import Text

from orchestrator.cli import rendering as view
from orchestrator.cli.bulk import bulk_command
from orchestrator.cli.events import events_command
from orchestrator.cli.options import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SAGA_FAILED,
    EXIT_USAGE,
    SAGA_STATUSES,
    CliError,
    env_or,
    operator_name,
    read_token_file,
)
from orchestrator.cli.output import note, show, stdout_console, table_width, write_line
from orchestrator.cli.task_commands import decide_command, tasks_command
from orchestrator.client import (
    ClientError,
    SagaClient,
    SagaFilters,
    SagaHandle,
    StreamLost,
    start_batches,
)
from orchestrator.core.clock import utc_now
from orchestrator.core.errors import ConfigurationError
from orchestrator.security.tls import client_tls
from saga.v1 import orchestrator_pb2 as pb


def list_filters(args: argparse.Namespace) -> SagaFilters:
    """The filters the `saga list` flags ask for."""
    filters = SagaFilters(
        saga_type=args.saga_type, correlation_id=args.correlation_id, lock_key=args.lock_key
    )
    if args.status:
        filters["status"] = SAGA_STATUSES[args.status]
    if args.needs_intervention is not None:
        filters["needs_intervention"] = args.needs_intervention
    if args.since is not None:
        filters["created_after"] = args.since
    if args.until is not None:
        filters["created_before"] = args.until
    return filters


async def _list(args: argparse.Namespace, client: SagaClient) -> int:
    # One page unless --all: the flags page by hand (--limit, --page-token).
    sagas: list[pb.Saga] = []
    token = args.page_token
    while True:
        page = await client.list_saga_page(
            page_token=token, page_size=args.limit, **list_filters(args)
        )
        sagas.extend(page.sagas)
        token = page.next_page_token
        if not token or not args.all:
            break
    if args.json:
        write_line(view.to_json(pb.ListSagasResponse(sagas=sagas, next_page_token=token)))
        return EXIT_OK
    if not sagas:
        note("no sagas found")
    else:
        width = table_width()
        short_ids = width is not None and not args.wide
        show(view.sagas_table(sagas, now=utc_now(), short_ids=short_ids, width=width))
    if token:
        note(f"more sagas follow: add --page-token {token} (same filters), or use --all")
    return EXIT_OK


async def _get(args: argparse.Namespace, client: SagaClient) -> int:
    saga = await client.get_saga(args.saga_id)
    if args.json:
        write_line(view.to_json(saga, types=client.server_types))
    else:
        show(view.saga_view(saga, now=utc_now(), width=table_width(), types=client.server_types))
    return EXIT_OK


async def _history(args: argparse.Namespace, client: SagaClient) -> int:
    transitions = await client.history(args.saga_id)
    if args.json:
        write_line(view.to_json(pb.GetSagaHistoryResponse(transitions=transitions)))
    else:
        show(view.history_table(transitions, width=table_width()))
    return EXIT_OK


async def follow_transitions(
    client: SagaClient,
    saga_id: str,
    after_seq: int,
    *,
    reconnect_for: float,
    on_transition: Callable[[pb.Transition], None],
    on_notice: Callable[[str], None],
) -> int:
    """The saga's transitions after `after_seq` until it ends, and its final status; a
    stream not got back within `reconnect_for` seconds says how to pick it up again."""
    try:
        saga = await client.follow(
            saga_id,
            after_seq=after_seq,
            reconnect_for=reconnect_for,
            on_transition=on_transition,
            on_notice=on_notice,
        )
    except StreamLost as lost:
        raise CliError(
            f"lost the orchestrator at {client.address} and could not get the stream back "
            f"within {reconnect_for:g}s ({lost.cause}); continue with "
            f"`saga watch {saga_id} --from-seq {lost.last_seq}` once it is back "
            "(--address, env SAGA_ADDRESS)"
        ) from None
    return int(saga.status)


def _exit_code_of(status: int) -> int:
    return EXIT_OK if status == pb.SAGA_STATUS_COMPLETED else EXIT_SAGA_FAILED


async def watch_saga(
    client: SagaClient, saga_id: str, *, from_seq: int, as_json: bool, reconnect_for: float
) -> int:
    """`saga watch`: live on a terminal, one line (or JSON object) per transition otherwise."""
    saga = await client.get_saga(saga_id)  # NOT_FOUND and an unreachable server fail here, at once
    console = stdout_console()
    if as_json or not console.is_terminal:
        render = (
            (lambda row: write_line(view.to_json(row, indent=None)))
            if as_json
            else (lambda row: write_line(view.transition_line(row)))
        )
        status = await follow_transitions(
            client,
            saga_id,
            from_seq,
            reconnect_for=reconnect_for,
            on_transition=render,
            on_notice=lambda text: note(f"saga watch: {text}") if text else None,
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
        status = await follow_transitions(
            client, saga_id, 0, reconnect_for=reconnect_for, on_transition=apply, on_notice=notice
        )
        live.refresh()
    return _exit_code_of(status)


async def _watch(args: argparse.Namespace, client: SagaClient) -> int:
    return await watch_saga(
        client,
        args.saga_id,
        from_seq=args.from_seq,
        as_json=args.json,
        reconnect_for=args.reconnect_timeout,
    )


async def _start(args: argparse.Namespace, client: SagaClient) -> int:
    try:
        payload_dict = json.loads(args.payload)
    except json.JSONDecodeError as error:
        raise CliError(f"--payload is not valid JSON: {error}", EXIT_USAGE) from None
    if not isinstance(payload_dict, dict):
        raise CliError("--payload must be a JSON object", EXIT_USAGE)
    try:
        json.dumps(payload_dict, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise CliError(
            "--payload holds a lone surrogate escape (such as \\ud800), which is no "
            "character and cannot be sent; write the character itself or a valid pair",
            EXIT_USAGE,
        ) from None
    handle = await client.start_json(
        args.saga_type,
        payload_dict,
        correlation_id=args.correlation_id,
        idempotency_key=args.idempotency_key,
    )
    reply = pb.StartSagaResponse(
        saga_id=handle.saga_id,
        status=handle.status,
        created=handle.created,
    )
    if args.json:
        write_line(view.to_json(reply, indent=None if args.watch else 2))
    else:
        status = view.saga_status_name(reply.status)
        if reply.created:
            text = f"started saga {reply.saga_id} ({args.saga_type}): {status}"
        else:
            text = f"saga {reply.saga_id} was already started with this idempotency key: {status}"
        show(Text(text))
    if not args.watch:
        return EXIT_OK
    return await watch_saga(
        client, reply.saga_id, from_seq=0, as_json=args.json, reconnect_for=args.reconnect_timeout
    )


def _start_requests(
    lines: Iterable[str], default_type: str, refused: list[tuple[int, str]]
) -> Iterator[tuple[int, pb.StartSagaRequest]]:
    """Each non-blank line's request with its line number; a line that is not a
    StartSagaRequest in JSON goes to `refused` (line number, why) and is not sent."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        request = pb.StartSagaRequest()
        try:
            json_format.Parse(line, request)
        except (json_format.ParseError, ValueError) as error:
            refused.append((number, f"not a StartSagaRequest in JSON: {error}"))
            continue
        request.saga_type = request.saga_type or default_type
        yield number, request


def _result_line(number: int, answer: SagaHandle[Message] | ClientError) -> dict[str, Any]:
    if isinstance(answer, ClientError):
        code = answer.code.name if answer.code is not None else "UNKNOWN"
        message = str(answer).removeprefix(f"{code}: ")
        error = {"code": code, "message": message, "reason": answer.reason}
        return {"line": number, "error": error}
    status = pb.SagaStatus.Name(answer.status)
    return {"line": number, "saga_id": answer.saga_id, "status": status, "created": answer.created}


async def _start_many(args: argparse.Namespace, client: SagaClient) -> int:
    """Read, send and print batch by batch, so a file of any length streams through."""
    counts = {"started": 0, "already started": 0, "refused": 0}
    refused: list[tuple[int, str]] = []
    with args.file:
        numbered = _start_requests(args.file, args.saga_type, refused)
        while True:
            pending: dict[int, pb.StartSagaRequest] = dict(
                itertools.islice(numbered, args.batch_size)
            )
            # Lines refused while reading come out in their place among the answers.
            lines: list[dict[str, Any]] = [
                {"line": n, "error": {"code": "INVALID_ARGUMENT", "message": why, "reason": ""}}
                for n, why in refused
            ]
            refused.clear()
            if pending:
                answers: list[SagaHandle[Message] | ClientError] = []
                for batch in start_batches(pending.values(), args.batch_size):
                    answers += await client.start_batch(batch)
                lines += [_result_line(n, a) for n, a in zip(pending, answers, strict=True)]
            for line in sorted(lines, key=lambda line: int(line["line"])):
                if "error" in line:
                    counts["refused"] += 1
                else:
                    counts["started" if line["created"] else "already started"] += 1
                write_line(json.dumps(line))
            if not pending:
                break
    note(", ".join(f"{count} {what}" for what, count in counts.items()))
    return EXIT_OK if counts["refused"] == 0 else EXIT_ERROR


async def _operator_call(args: argparse.Namespace, client: SagaClient) -> int:
    """abort, retry, resolve, break-lock: one call each, recorded with who asked and why
    (abort, retry and resolve take `--all [filters]` instead of a saga: `cli.bulk`)."""
    if getattr(args, "all", False):
        return await bulk_command(args, client)
    if not args.saga_id:
        raise CliError(f"{args.command} needs a saga id, or --all with filters", EXIT_USAGE)
    by = operator_name(args.by)
    if args.command == "abort":
        saga = await client.abort(args.saga_id, reason=args.reason, requested_by=by)
        done = "aborted"
    elif args.command == "retry":
        saga = await client.retry(args.saga_id, reason=args.reason, requested_by=by)
        done = "retried"
    elif args.command == "break-lock":
        saga = (
            await client.stub.BreakLock(
                pb.BreakLockRequest(saga_id=args.saga_id, reason=args.reason, requested_by=by),
                timeout=client.timeout,
            )
        ).saga
        done = "lock keys taken away"
    else:
        saga = await client.resolve(args.saga_id, args.step, reason=args.reason, requested_by=by)
        done = f"step {args.step} resolved"
    if args.json:
        write_line(view.to_json(saga, types=client.server_types))
        return EXIT_OK
    summary = Text(f"{done} by {by}: saga {saga.saga_id} is now ")
    summary.append_text(view.saga_status_text(saga))
    show(summary)
    show(view.saga_view(saga, now=utc_now(), width=table_width(), types=client.server_types))
    return EXIT_OK


CLIENT_COMMANDS: dict[str, Callable[[argparse.Namespace, SagaClient], Awaitable[int]]] = {
    "start": _start,
    "start-many": _start_many,
    "list": _list,
    "get": _get,
    "history": _history,
    "watch": _watch,
    "abort": _operator_call,
    "retry": _operator_call,
    "resolve": _operator_call,
    "break-lock": _operator_call,
    "events": events_command,
    "tasks": tasks_command,
    "complete": decide_command,
    "reject": decide_command,
}


def client_command(args: argparse.Namespace) -> int:
    """Run one client command on a channel of its own; a failed call becomes a CliError."""

    async def run() -> int:
        token = read_token_file(args.token_file) or env_or("SAGA_TOKEN")
        try:
            tls = client_tls(args.tls_ca, args.tls_cert, args.tls_key)
            client = SagaClient(
                args.address, args.timeout, tls=tls, token=token, namespace=args.namespace
            )
        except ConfigurationError as error:
            raise CliError(str(error), EXIT_USAGE) from None
        async with client:
            try:
                if getattr(args, "saga_id", None):
                    args.saga_id = await client.resolve_saga_id(args.saga_id)
                return await CLIENT_COMMANDS[args.command](args, client)
            except ClientError as error:
                raise CliError(str(error)) from None

    return asyncio.run(run())
