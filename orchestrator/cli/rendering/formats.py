"""The vocabulary of the terminal views: names, times, JSON, styled cells and tables.

Pure functions from the API's protobuf values to text: no gRPC, no clock, no
terminal. Every cell is a `rich.text.Text`, never a markup string: saga ids, errors
and operators' reasons are data, and a `[` in them must print as a `[`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from saga.v1 import orchestrator_pb2 as pb

SHORT_ID_LENGTH = 8
"""Characters of a saga id shown in `saga list` on a terminal: unique enough to read."""
EMPTY = "-"
"""What an empty cell shows, so columns stay countable in a pipe."""
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
    pb.STEP_STATUS_NOTHING_TO_UNDO: "dim cyan",
    pb.STEP_STATUS_WAITING: "magenta",
}
INTERVENTION_STYLE = "bold magenta"


# --- names, times and durations ---------------------------------------------------------------


def enum_name(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return str(value)  # a newer server's value this client does not know


def saga_status_name(value: int) -> str:
    """`COMPLETED` for SAGA_STATUS_COMPLETED: the prefix is noise in a table."""
    return enum_name(pb.SagaStatus, value, "SAGA_STATUS_")


def step_status_name(value: int) -> str:
    """`COMPENSATED` for STEP_STATUS_COMPENSATED."""
    return enum_name(pb.StepStatus, value, "STEP_STATUS_")


def event_name(value: int) -> str:
    """`STEP_STARTED` for TRANSITION_EVENT_STEP_STARTED."""
    return enum_name(pb.TransitionEvent, value, "TRANSITION_EVENT_")


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
    """When the next attempt runs: `in 1.5s` while it waits. Once its time has passed the
    attempt has been sent (the time is cleared by its answer, not by its sending): `in
    flight`."""
    if then is None:
        return EMPTY
    left = (then - now).total_seconds()
    return f"in {format_duration(left)}" if left > 0 else "in flight"


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


def cell(value: str, style: str = "") -> Text:
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


def needed_width(
    columns: Sequence[Column], rows: Sequence[Sequence[Text]], shown: list[int]
) -> int:
    total = COLUMN_GAP * (len(shown) - 1)
    for index in shown:
        natural = max(
            [len(columns[index].header)] + [row[index].cell_len for row in rows], default=0
        )
        total += min(natural, WRAP_MIN_WIDTH) if columns[index].wrap else natural
    return total


def table_of(columns: Sequence[Column], rows: Sequence[Sequence[Text]], width: int | None) -> Table:
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
            if needed_width(columns, rows, shown) <= width:
                break
            shown.remove(index)
    squeezed = width is not None and needed_width(columns, rows, shown) > width
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


def one_line(text: str) -> str:
    return " ".join(text.split())


def quoted(text: str) -> str:
    """Free text on one line in double quotes (JSON escapes), as logfmt readers expect."""
    return json.dumps(one_line(text), ensure_ascii=False)


# --- plain rendering ----------------------------------------------------------------------------


def render_plain(renderable: RenderableType, *, width: int = 200) -> str:
    """What a renderable prints as, without colour, at `width` columns (for tests, logs)."""
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, color_system=None, force_terminal=False, highlight=False
    )
    console.print(renderable)
    return buffer.getvalue()
