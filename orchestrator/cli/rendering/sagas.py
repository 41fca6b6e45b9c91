"""How sagas, steps and transitions look in `saga list`, `saga get` and `saga history`,
and a definition in `saga describe --json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from google.protobuf import any_pb2, json_format
from google.protobuf.descriptor_pool import DescriptorPool
from rich.console import Group
from rich.table import Table
from rich.text import Text

from orchestrator.api import catalogue
from orchestrator.cli.rendering.formats import (
    SAGA_STATUS_STYLES,
    Column,
    cell,
    event_name,
    format_age,
    format_due,
    format_duration,
    format_time,
    quoted,
    saga_status_name,
    saga_status_text,
    short_id,
    step_status_name,
    step_status_text,
    table_of,
    time_of,
)
from orchestrator.core.definition import SagaDefinition
from saga.v1 import orchestrator_pb2 as pb

# --- sagas --------------------------------------------------------------------------------------


SAGA_COLUMNS = (
    Column("SAGA ID"),
    Column("TYPE", drop=3),
    Column("CORRELATION"),
    Column("STATUS"),
    Column("FAILED STEP", drop=2),
    Column("CREATED", drop=4),
    Column("UPDATED", drop=1),
)


def sagas_table(
    sagas: Sequence[pb.Saga], *, now: datetime, short_ids: bool, width: int | None = None
) -> Table:
    """`saga list`: one row per saga, newest first as the server sent them."""
    rows = [
        [
            cell(short_id(saga.saga_id) if short_ids else saga.saga_id),
            cell(saga.saga_type + (" (tracked)" if saga.tracked else "")),
            cell(saga.correlation_id),
            saga_status_text(saga),
            cell(saga.failed_step, "red"),
            cell(format_time(time_of(saga, "create_time"))),
            cell(format_age(time_of(saga, "update_time"), now)),
        ]
        for saga in sagas
    ]
    return table_of(SAGA_COLUMNS, rows, width)


def saga_header(saga: pb.Saga, *, now: datetime) -> Table:
    """`saga get`'s fields as `name: value` lines; empty fields are left out."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    created = time_of(saga, "create_time")
    updated = time_of(saga, "update_time")
    rows: list[tuple[str, Text]] = [
        ("Saga", cell(saga.saga_id)),
        ("Type", cell(f"{saga.saga_type} v{saga.definition_version}")),
        ("Correlation", cell(saga.correlation_id)),
        ("Status", saga_status_text(saga)),
    ]
    if saga.namespace and saga.namespace != "default":
        rows.insert(1, ("Namespace", cell(saga.namespace)))
    if saga.failed_step:
        rows.append(("Failed step", cell(saga.failed_step, "red")))
    if saga.failure_reason:
        rows.append(("Failure reason", cell(saga.failure_reason)))
    rows.append(("Created", cell(f"{format_time(created)} ({format_age(created, now)})")))
    rows.append(("Updated", cell(f"{format_time(updated)} ({format_age(updated, now)})")))
    deadline = time_of(saga, "deadline_time")
    if deadline is not None:
        rows.append(("Deadline", cell(format_time(deadline))))
    if saga.idempotency_key:
        rows.append(("Idempotency key", cell(saga.idempotency_key)))
    if saga.locks:
        rows.append(("Locks", lock_text(saga, now)))
    if saga.tracked:
        rows.append(("Tracked", cell("yes: its steps are events its services publish")))
    rows.extend(("Expecting", cell(expectation_text(step, now))) for step in expecting(saga))
    for name, value in rows:
        grid.add_row(Text(name + ":"), value)
    return grid


def expecting(saga: pb.Saga) -> list[pb.Step]:
    """A tracked saga's steps that wait for an event now."""
    return [step for step in saga.steps if step.expected_event_types]


def expectation_text(step: pb.Step, now: datetime) -> str:
    """What a tracked saga's waiting step expects next and by when: `com.x.flight_booked
    or com.x.flight_booking_failed from flight (book_flight) by 12:00:30 (in 12s)`,
    `(overdue)` once its window has passed (the engine flags or rescues it then)."""
    what = " or ".join(step.expected_event_types)
    source = f" from {step.participant}" if step.participant else ""
    undo = ", undoing it" if step.expecting_undo else ""
    text = f"{what}{source} ({step.name}{undo})"
    deadline = time_of(step, "wait_deadline")
    if deadline is None:
        return text
    left = (deadline - now).total_seconds()
    when = f"in {format_duration(left)}" if left > 0 else "overdue"
    return f"{text} by {format_time(deadline)} ({when})"


def lock_text(saga: pb.Saga, now: datetime) -> Text:
    """The saga's lock keys: "held", or its place in the key's queue and since when."""
    waiting_since = time_of(saga, "lock_wait_time")
    parts = []
    for lock in saga.locks:
        if lock.held:
            parts.append(f"{lock.key} held")
        else:
            since = f", waiting {format_age(waiting_since, now)}" if waiting_since else ""
            parts.append(f"{lock.key} queued #{lock.queue_position}{since}")
    held = all(lock.held for lock in saga.locks)
    return cell("; ".join(parts), "" if held else "yellow")


STEP_COLUMNS = (
    Column("STEP"),
    Column("GROUP", drop=4),
    Column("STATUS"),
    Column("ATTEMPTS", drop=1, right=True),
    Column("COMP. ATTEMPTS", drop=3, right=True),
    Column("NEXT ATTEMPT", drop=2),
    Column("ERROR", wrap=True),
    Column("REPLY", drop=5, wrap=True),
)
REPLY_SUMMARY_LENGTH = 60


def reply_summary(reply: any_pb2.Any, types: Callable[[], DescriptorPool] | None = None) -> str:
    """A step's reply in one short line, `field=value ...` (`saga get --json` has it all);
    its type is looked up here, else in the pool `types` gives, else only named."""
    if not reply.type_url:
        return ""
    try:
        fields = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    except TypeError:
        if types is None:
            return reply.TypeName()
        try:
            fields = json_format.MessageToDict(
                reply, preserving_proto_field_name=True, descriptor_pool=types()
            )
        except (TypeError, KeyError):
            return reply.TypeName()
    fields.pop("@type", None)
    text = " ".join(f"{name}={json.dumps(value)}" for name, value in fields.items())
    if len(text) > REPLY_SUMMARY_LENGTH:
        text = text[: REPLY_SUMMARY_LENGTH - 1] + "…"
    return text


def steps_table(
    steps: Sequence[pb.Step],
    *,
    now: datetime,
    width: int | None = None,
    types: Callable[[], DescriptorPool] | None = None,
) -> Table:
    """A saga's steps in definition order with what an operator needs to act on them."""
    rows = [
        [
            cell(step.name),
            cell(step.group),
            step_status_text(step.status),
            cell(str(step.attempts)),
            cell(str(step.compensation_attempts)),
            cell(format_due(time_of(step, "next_attempt_time"), now)),
            cell(step.error, "red"),
            cell(reply_summary(step.reply, types)),
        ]
        for step in steps
    ]
    return table_of(STEP_COLUMNS, rows, width)


def saga_view(
    saga: pb.Saga,
    *,
    now: datetime,
    width: int | None = None,
    types: Callable[[], DescriptorPool] | None = None,
) -> Group:
    """`saga get` (and the answer to abort, retry, resolve): the header, then the steps."""
    return Group(
        saga_header(saga, now=now),
        Text(""),
        steps_table(saga.steps, now=now, width=width, types=types),
    )


# --- transitions --------------------------------------------------------------------------------


HISTORY_COLUMNS = (
    Column("SEQ", right=True),
    Column("TIME", drop=1),
    Column("EVENT"),
    Column("STEP"),
    Column("SAGA", drop=5),
    Column("STEP STATUS", drop=4),
    Column("ATTEMPT", drop=3, right=True),
    Column("ACTOR", drop=2),
    Column("REASON", wrap=True),
    Column("ERROR", wrap=True),
)


def history_table(transitions: Iterable[pb.Transition], *, width: int | None = None) -> Table:
    """`saga history`: the audit trail, one row per committed transition."""
    rows = [
        [
            cell(str(row.seq)),
            cell(format_time(time_of(row, "time"), millis=True)),
            cell(event_name(row.event)),
            cell(row.step),
            Text(
                saga_status_name(row.saga_status), style=SAGA_STATUS_STYLES.get(row.saga_status, "")
            ),
            step_status_text(row.step_status) if row.step else cell(""),
            cell(str(row.attempt) if row.attempt else ""),
            cell(row.actor),
            cell(row.reason),
            cell(row.error, "red"),
        ]
        for row in transitions
    ]
    return table_of(HISTORY_COLUMNS, rows, width)


def transition_line(row: pb.Transition) -> str:
    """One transition as one plain line, for `saga watch` into a pipe or a log file.

    `#seq time EVENT step=... saga=... step_status=... attempt=N actor=... reason=... error=...`,
    fields without a value left out; the free-text fields come last, quoted.
    """
    parts = [
        f"#{row.seq}",
        format_time(time_of(row, "time"), millis=True).replace(" ", "T"),
        event_name(row.event),
    ]
    if row.step:
        parts.append(f"step={row.step}")
    parts.append(f"saga={saga_status_name(row.saga_status)}")
    if row.step:
        parts.append(f"step_status={step_status_name(row.step_status)}")
    if row.attempt:
        parts.append(f"attempt={row.attempt}")
    if row.actor:
        parts.append(f"actor={row.actor}")
    if row.reason:
        parts.append(f"reason={quoted(row.reason)}")
    if row.error:
        parts.append(f"error={quoted(row.error)}")
    return " ".join(parts)


# --- definitions --------------------------------------------------------------------------------


def definition_document(definition: SagaDefinition, *, latest: bool = True) -> dict[str, Any]:
    """`saga describe --json`: what the engine will run, as data for a script (the same
    document a server's ListSagaTypes entry gives)."""
    return catalogue.definition_document(catalogue.definition_to_proto(definition, latest=latest))
