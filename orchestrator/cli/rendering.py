"""How sagas, steps and transitions look to a person and to a script.

Pure functions from the API's protobuf messages to `rich` renderables, plain
lines and JSON text: no gRPC, no clock, no terminal. The `saga` command decides
where output goes; these decide what it says, so tests can render exactly what
an operator sees (colours off, any width).

Every cell is a `rich.text.Text`, never a markup string: saga ids, errors and
operators' reasons are data, and a `[` in them must print as a `[`.
"""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import any_pb2, json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.api import catalogue
from orchestrator.client import TERMINAL_SAGA_STATUSES
from orchestrator.core.definition import SagaDefinition
from saga.v1 import orchestrator_pb2 as pb

SHORT_ID_LENGTH = 8
"""Characters of a saga id shown in `saga list` on a terminal: unique enough to read."""
EMPTY = "-"
"""What an empty cell shows, so columns stay countable in a pipe."""
RECENT_EVENTS = 8
"""Transitions listed under the steps in `saga watch` on a terminal."""

SAGA_STATUS_STYLES: dict[int, str] = {
    pb.SAGA_STATUS_RUNNING: "blue",
    pb.SAGA_STATUS_COMPENSATING: "yellow",
    pb.SAGA_STATUS_COMPLETED: "green",
    pb.SAGA_STATUS_FAILED: "red",
}
STEP_STATUS_STYLES: dict[int, str] = {
    pb.STEP_STATUS_PENDING: "dim",
    pb.STEP_STATUS_STARTED: "blue",
    pb.STEP_STATUS_COMPLETED: "green",
    pb.STEP_STATUS_FAILED: "red",
    pb.STEP_STATUS_COMPENSATING: "yellow",
    pb.STEP_STATUS_COMPENSATED: "cyan",
    pb.STEP_STATUS_COMPENSATION_FAILED: "bold red",
}
INTERVENTION_STYLE = "bold magenta"
_SETTLED_STEP_STATUSES = frozenset(
    {
        pb.STEP_STATUS_COMPLETED,
        pb.STEP_STATUS_FAILED,
        pb.STEP_STATUS_COMPENSATED,
        pb.STEP_STATUS_COMPENSATION_FAILED,
    }
)
_COMPENSATION_EVENTS = frozenset(
    {
        pb.TRANSITION_EVENT_COMPENSATION_STARTED,
        pb.TRANSITION_EVENT_COMPENSATION_RETRY_SCHEDULED,
        pb.TRANSITION_EVENT_COMPENSATION_COMPLETED,
        pb.TRANSITION_EVENT_COMPENSATION_FAILED,
    }
)
_ACTION_EVENTS = frozenset(
    {
        pb.TRANSITION_EVENT_STEP_STARTED,
        pb.TRANSITION_EVENT_STEP_RETRY_SCHEDULED,
        pb.TRANSITION_EVENT_STEP_COMPLETED,
        pb.TRANSITION_EVENT_STEP_FAILED,
    }
)


# --- names, times and durations ---------------------------------------------------------------


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return str(value)  # a newer server's value this client does not know


def saga_status_name(value: int) -> str:
    """`COMPLETED` for SAGA_STATUS_COMPLETED: the prefix is noise in a table."""
    return _enum_name(pb.SagaStatus, value, "SAGA_STATUS_")


def step_status_name(value: int) -> str:
    """`COMPENSATED` for STEP_STATUS_COMPENSATED."""
    return _enum_name(pb.StepStatus, value, "STEP_STATUS_")


def event_name(value: int) -> str:
    """`STEP_STARTED` for TRANSITION_EVENT_STEP_STARTED."""
    return _enum_name(pb.TransitionEvent, value, "TRANSITION_EVENT_")


def time_of(message: Message, name: str) -> datetime | None:
    """A Timestamp field as an aware UTC datetime; None when the field is unset."""
    if not message.HasField(name):
        return None
    stamp = getattr(message, name)
    return datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, UTC)


def format_time(value: datetime | None, *, millis: bool = False) -> str:
    """UTC, to the second (or millisecond), marked `Z` so nobody mistakes it for local."""
    if value is None:
        return EMPTY
    value = value.astimezone(UTC)
    if millis:
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def format_duration(seconds: float) -> str:
    """Short and exact enough to compare: 850ms, 12.3s, 4m05s, 2h03m, 3d04h."""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def format_age(then: datetime | None, now: datetime) -> str:
    """`5m03s ago`; `-` when unknown."""
    if then is None:
        return EMPTY
    return f"{format_duration((now - then).total_seconds())} ago"


def format_due(then: datetime | None, now: datetime) -> str:
    """When the next attempt runs: `in 1.5s`, or `due` once its time has passed."""
    if then is None:
        return EMPTY
    left = (then - now).total_seconds()
    return f"in {format_duration(left)}" if left > 0 else "due"


def short_id(saga_id: str) -> str:
    """The last characters: saga ids are UUIDv7, whose first ones are the creation time,
    shared by every saga started in the same few seconds."""
    return saga_id[-SHORT_ID_LENGTH:]


# --- JSON ---------------------------------------------------------------------------------------


def to_json(
    message: Message,
    *,
    indent: int | None = 2,
    types: Callable[[], DescriptorPool] | None = None,
) -> str:
    """The API's own JSON mapping with proto field names; `indent=None` for one line.
    An Any of a type this process has not imported is read with the pool `types` gives."""
    try:
        text = json_format.MessageToJson(message, preserving_proto_field_name=True, indent=indent)
    except TypeError:
        if types is None:
            raise
        text = json_format.MessageToJson(
            message, preserving_proto_field_name=True, indent=indent, descriptor_pool=types()
        )
    return text if indent is not None else " ".join(text.split("\n"))


# --- cells --------------------------------------------------------------------------------------


def _cell(value: str, style: str = "") -> Text:
    return Text(value or EMPTY, style=style)


def saga_status_text(saga: pb.Saga) -> Text:
    """The status in its colour, and a flag an operator cannot miss when one must act."""
    text = Text(saga_status_name(saga.status), style=SAGA_STATUS_STYLES.get(saga.status, ""))
    if saga.needs_intervention:
        text.append(" (needs intervention)", style=INTERVENTION_STYLE)
    return text


def step_status_text(status: int) -> Text:
    return Text(step_status_name(status), style=STEP_STATUS_STYLES.get(status, ""))


@dataclass(frozen=True, slots=True)
class Column:
    """A table column and what happens to it on a narrow terminal.

    `drop` > 0 marks a column that may be left out when the table does not fit, the
    highest first; 0 means always shown. A `wrap` column holds free text (errors,
    reasons) and folds over lines instead of widening the table.
    """

    header: str
    drop: int = 0
    wrap: bool = False
    right: bool = False


WRAP_MIN_WIDTH = 12
"""The narrowest a free-text column is squeezed to before columns are dropped."""
COLUMN_GAP = 2


def _needed_width(
    columns: Sequence[Column], rows: Sequence[Sequence[Text]], shown: list[int]
) -> int:
    total = COLUMN_GAP * (len(shown) - 1)
    for index in shown:
        natural = max(
            [len(columns[index].header)] + [row[index].cell_len for row in rows], default=0
        )
        total += min(natural, WRAP_MIN_WIDTH) if columns[index].wrap else natural
    return total


def _table(columns: Sequence[Column], rows: Sequence[Sequence[Text]], width: int | None) -> Table:
    """kubectl-like: a bold header, no borders, two spaces between columns.

    `width` None (a pipe, a file) keeps every column and never wraps a row. Given a
    terminal's width, the optional columns are dropped (highest `drop` first) until
    the rest fit; if even the essential ones do not, everything folds.
    """
    shown = list(range(len(columns)))
    if width is not None:
        for _, index in sorted(
            ((column.drop, index) for index, column in enumerate(columns) if column.drop),
            reverse=True,
        ):
            if _needed_width(columns, rows, shown) <= width:
                break
            shown.remove(index)
    squeezed = width is not None and _needed_width(columns, rows, shown) > width
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False, padding=(0, 1))
    for index in shown:
        column = columns[index]
        table.add_column(
            column.header,
            justify="right" if column.right else "left",
            no_wrap=not (column.wrap or squeezed),
            overflow="fold",
            min_width=min(WRAP_MIN_WIDTH, len(column.header)) if column.wrap else None,
        )
    for row in rows:
        table.add_row(*(row[index] for index in shown))
    return table


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
            _cell(short_id(saga.saga_id) if short_ids else saga.saga_id),
            _cell(saga.saga_type),
            _cell(saga.correlation_id),
            saga_status_text(saga),
            _cell(saga.failed_step, "red"),
            _cell(format_time(time_of(saga, "create_time"))),
            _cell(format_age(time_of(saga, "update_time"), now)),
        ]
        for saga in sagas
    ]
    return _table(SAGA_COLUMNS, rows, width)


def saga_header(saga: pb.Saga, *, now: datetime) -> Table:
    """`saga get`'s fields as `name: value` lines; empty fields are left out."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    created = time_of(saga, "create_time")
    updated = time_of(saga, "update_time")
    rows: list[tuple[str, Text]] = [
        ("Saga", _cell(saga.saga_id)),
        ("Type", _cell(f"{saga.saga_type} v{saga.definition_version}")),
        ("Correlation", _cell(saga.correlation_id)),
        ("Status", saga_status_text(saga)),
    ]
    if saga.failed_step:
        rows.append(("Failed step", _cell(saga.failed_step, "red")))
    if saga.failure_reason:
        rows.append(("Failure reason", _cell(saga.failure_reason)))
    rows.append(("Created", _cell(f"{format_time(created)} ({format_age(created, now)})")))
    rows.append(("Updated", _cell(f"{format_time(updated)} ({format_age(updated, now)})")))
    deadline = time_of(saga, "deadline_time")
    if deadline is not None:
        rows.append(("Deadline", _cell(format_time(deadline))))
    if saga.idempotency_key:
        rows.append(("Idempotency key", _cell(saga.idempotency_key)))
    if saga.locks:
        rows.append(("Locks", lock_text(saga, now)))
    for name, value in rows:
        grid.add_row(Text(name + ":"), value)
    return grid


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
    return _cell("; ".join(parts), "" if held else "yellow")


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
            _cell(step.name),
            _cell(step.group),
            step_status_text(step.status),
            _cell(str(step.attempts)),
            _cell(str(step.compensation_attempts)),
            _cell(format_due(time_of(step, "next_attempt_time"), now)),
            _cell(step.error, "red"),
            _cell(reply_summary(step.reply, types)),
        ]
        for step in steps
    ]
    return _table(STEP_COLUMNS, rows, width)


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
            _cell(str(row.seq)),
            _cell(format_time(time_of(row, "time"), millis=True)),
            _cell(event_name(row.event)),
            _cell(row.step),
            Text(
                saga_status_name(row.saga_status), style=SAGA_STATUS_STYLES.get(row.saga_status, "")
            ),
            step_status_text(row.step_status) if row.step else _cell(""),
            _cell(str(row.attempt) if row.attempt else ""),
            _cell(row.actor),
            _cell(row.reason),
            _cell(row.error, "red"),
        ]
        for row in transitions
    ]
    return _table(HISTORY_COLUMNS, rows, width)


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
        parts.append(f"reason={_quoted(row.reason)}")
    if row.error:
        parts.append(f"error={_quoted(row.error)}")
    return " ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _quoted(text: str) -> str:
    """Free text on one line in double quotes (JSON escapes), as logfmt readers expect."""
    return json.dumps(_one_line(text), ensure_ascii=False)


# --- watching -----------------------------------------------------------------------------------


@dataclass
class StepProgress:
    """What `saga watch` knows about one step, from the transitions seen so far."""

    name: str
    group: str = ""
    status: int = pb.STEP_STATUS_PENDING
    attempts: int = 0
    compensation_attempts: int = 0
    started: datetime | None = None
    finished: datetime | None = None
    compensation_started: datetime | None = None
    compensation_finished: datetime | None = None
    error: str = ""


@dataclass
class WatchState:
    """A saga rebuilt from its transition log, as `saga watch` draws it.

    Built from the step names of one GetSaga (all PENDING) and then only from
    transitions, replayed from seq 1, so what it shows is what the log says.
    """

    saga_id: str
    saga_type: str
    correlation_id: str
    steps: dict[str, StepProgress]
    status: int = pb.SAGA_STATUS_RUNNING
    started: datetime | None = None
    finished: datetime | None = None
    last_seq: int = 0
    show_after_seq: int = 0
    events: deque[pb.Transition] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    notice: str = ""

    @classmethod
    def of(cls, saga: pb.Saga, *, show_after_seq: int = 0) -> WatchState:
        steps = {step.name: StepProgress(step.name, step.group) for step in saga.steps}
        return cls(
            saga.saga_id,
            saga.saga_type,
            saga.correlation_id,
            steps,
            started=time_of(saga, "create_time"),
            show_after_seq=show_after_seq,
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_SAGA_STATUSES

    def apply(self, row: pb.Transition) -> None:
        """Fold one transition in; a repeated or older seq changes nothing."""
        if row.seq <= self.last_seq:
            return
        self.last_seq = row.seq
        at = time_of(row, "time")
        if row.event == pb.TRANSITION_EVENT_SAGA_STARTED and at is not None:
            self.started = at
        self.status = row.saga_status
        self.finished = at if self.terminal else None
        if row.seq > self.show_after_seq:
            self.events.append(row)
        if not row.step:
            return
        step = self.steps.setdefault(row.step, StepProgress(row.step))
        if row.step_status != pb.STEP_STATUS_UNSPECIFIED:
            step.status = row.step_status
        if row.event in _ACTION_EVENTS:
            step.attempts = max(step.attempts, row.attempt)
            if step.started is None:
                step.started = at
            if row.step_status in _SETTLED_STEP_STATUSES:
                step.finished = at
        elif row.event in _COMPENSATION_EVENTS:
            step.compensation_attempts = max(step.compensation_attempts, row.attempt)
            if step.compensation_started is None:
                step.compensation_started = at
            if row.step_status in _SETTLED_STEP_STATUSES:
                step.compensation_finished = at
        if row.error:
            step.error = row.error


def _span(start: datetime | None, end: datetime | None, now: datetime) -> Text:
    """How long something took, or has been running (marked with `…`) when unfinished."""
    if start is None:
        return _cell("")
    if end is None:
        return Text(format_duration((now - start).total_seconds()) + "…", style="blue")
    return _cell(format_duration((end - start).total_seconds()))


def _offset(start: datetime | None, at: datetime | None) -> str:
    if start is None or at is None:
        return ""
    return "+" + format_duration((at - start).total_seconds())


WATCH_STEP_COLUMNS = (
    Column("STEP"),
    Column("GROUP", drop=4),
    Column("STATUS"),
    Column("ATTEMPTS", drop=1),
    Column("STARTED", drop=3),
    Column("TOOK"),
    Column("UNDO TOOK", drop=2),
    Column("ERROR", wrap=True),
)
WATCH_EVENT_COLUMNS = (
    Column("SEQ", right=True),
    Column("AT", drop=2),
    Column("EVENT"),
    Column("STEP"),
    Column("ATTEMPT", drop=1, right=True),
    Column("DETAIL", wrap=True),
)


def _detail(row: pb.Transition) -> str:
    """Who asked and why, then the error: the free text of a transition on one line."""
    asked = f"{row.actor}: {row.reason}" if row.reason else ""
    return _one_line(" ".join(filter(None, (asked, row.error))))


def watch_view(state: WatchState, *, now: datetime, width: int | None = None) -> Group:
    """The live picture: saga status and elapsed time, each step's status and timing
    (when it started after the saga, how long its action and its compensation took),
    then the latest transitions."""
    end = state.finished or now
    elapsed = format_duration((end - state.started).total_seconds()) if state.started else EMPTY
    title = Text.assemble(
        ("saga ", "bold"),
        (state.saga_id, "bold"),
        f"  {state.saga_type}  {state.correlation_id}  ",
        Text(saga_status_name(state.status), style=SAGA_STATUS_STYLES.get(state.status, "")),
        f"  elapsed {elapsed}",
    )
    steps = [
        [
            _cell(step.name),
            _cell(step.group),
            step_status_text(step.status),
            _cell(
                str(step.attempts)
                + (f" + {step.compensation_attempts} undo" if step.compensation_attempts else "")
            ),
            _cell(_offset(state.started, step.started)),
            _span(step.started, step.finished, now),
            _span(step.compensation_started, step.compensation_finished, now),
            _cell(step.error, "red"),
        ]
        for step in state.steps.values()
    ]
    events = [
        [
            _cell(str(row.seq)),
            _cell(_offset(state.started, time_of(row, "time"))),
            _cell(event_name(row.event)),
            _cell(row.step),
            _cell(str(row.attempt) if row.attempt else ""),
            _cell(_detail(row)),
        ]
        for row in state.events
    ]
    parts: list[RenderableType] = [
        title,
        Text(""),
        _table(WATCH_STEP_COLUMNS, steps, width),
        Text(""),
        _table(WATCH_EVENT_COLUMNS, events, width),
    ]
    if state.notice:
        parts.append(Text(state.notice, style="yellow"))
    return Group(*parts)


# --- definitions --------------------------------------------------------------------------------


def definition_document(definition: SagaDefinition, *, latest: bool = True) -> dict[str, Any]:
    """`saga describe --json`: what the engine will run, as data for a script (the same
    document a server's ListSagaTypes entry gives)."""
    return catalogue.definition_document(catalogue.definition_to_proto(definition, latest=latest))


# --- plain rendering ----------------------------------------------------------------------------


def render_plain(renderable: RenderableType, *, width: int = 200) -> str:
    """What a renderable prints as, without colour, at `width` columns (for tests, logs)."""
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, color_system=None, force_terminal=False, highlight=False
    )
    console.print(renderable)
    return buffer.getvalue()
