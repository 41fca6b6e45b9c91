"""The live picture `saga watch` draws: each step's status and timing, then the latest
transitions, updated as transitions arrive.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Group, RenderableType
from rich.text import Text

from orchestrator.cli.rendering.formats import (
    EMPTY,
    SAGA_STATUS_STYLES,
    Column,
    cell,
    event_name,
    format_duration,
    one_line,
    saga_status_name,
    step_status_text,
    table_of,
    time_of,
)
from orchestrator.client import TERMINAL_SAGA_STATUSES
from saga.v1 import orchestrator_pb2 as pb

RECENT_EVENTS = 8
"""Transitions listed under the steps in `saga watch` on a terminal."""
_SETTLED_STEP_STATUSES = frozenset(
    {
        pb.STEP_STATUS_COMPLETED,
        pb.STEP_STATUS_FAILED,
        pb.STEP_STATUS_COMPENSATED,
        pb.STEP_STATUS_COMPENSATION_FAILED,
        pb.STEP_STATUS_NOTHING_TO_UNDO,
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
    participant: str = ""
    expecting: str = ""
    """A tracked step's wait as its STEP_WAITING row said it ("expecting <types> within
    30s"); empty once another row moved the step."""


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
        steps = {
            step.name: StepProgress(step.name, step.group, participant=step.participant)
            for step in saga.steps
        }
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
        if row.event == pb.TRANSITION_EVENT_STEP_WAITING and row.reason.startswith("expecting "):
            step.expecting = row.reason
        elif row.event != pb.TRANSITION_EVENT_EVENT_ANOMALY:
            step.expecting = ""
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
        return cell("")
    if end is None:
        return Text(format_duration((now - start).total_seconds()) + "…", style="blue")
    return cell(format_duration((end - start).total_seconds()))


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
    return one_line(" ".join(filter(None, (asked, row.error))))


def _expectations(state: WatchState) -> list[RenderableType]:
    """A tracked saga's waiting steps: what each expects, from whom, within what."""
    lines: list[RenderableType] = []
    for step in state.steps.values():
        if step.expecting and not state.terminal:
            source = f" ({step.participant})" if step.participant else ""
            lines.append(Text(f"{step.name}{source}: {step.expecting}", style="blue"))
    return lines


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
            cell(step.name),
            cell(step.group),
            step_status_text(step.status),
            cell(
                str(step.attempts)
                + (f" + {step.compensation_attempts} undo" if step.compensation_attempts else "")
            ),
            cell(_offset(state.started, step.started)),
            _span(step.started, step.finished, now),
            _span(step.compensation_started, step.compensation_finished, now),
            cell(step.error, "red"),
        ]
        for step in state.steps.values()
    ]
    events = [
        [
            cell(str(row.seq)),
            cell(_offset(state.started, time_of(row, "time"))),
            cell(event_name(row.event)),
            cell(row.step),
            cell(str(row.attempt) if row.attempt else ""),
            cell(_detail(row)),
        ]
        for row in state.events
    ]
    parts: list[RenderableType] = [
        title,
        Text(""),
        table_of(WATCH_STEP_COLUMNS, steps, width),
        *_expectations(state),
        Text(""),
        table_of(WATCH_EVENT_COLUMNS, events, width),
    ]
    if state.notice:
        parts.append(Text(state.notice, style="yellow"))
    return Group(*parts)
