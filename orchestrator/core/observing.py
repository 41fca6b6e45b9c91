"""What an incoming event does to a tracked saga: the pure half of the tracker.

The ingestor (engine/tracking.py) deduplicates a batch by (source, id), finds the
tracked types declaring each event type (`tracking.TrackedTypes`), extracts the
correlation (`tracking.correlation_of`) and loads the instances; then, per instance:

    run = start_instance(definition, event, now, saga_id, namespace)   # a start event
    outcome = apply_event(run, event, now)                             # any other
    for event, outcome in feed_held(run, held_events, now): ...        # held ones now due
    commit = run.take_commit()    # or take_opening(run, lease) for a new instance

and commits everything in one transaction. An event that comes before its turn is
HELD: the store keeps it and hands it back (`feed_held`, which asks `held_ready`),
so for any order in which a flow's events arrive the log is the same up to
EVENT_ANOMALY rows. Nothing here does I/O.

What else the engine does for tracked sagas, with the machine as it is:
- a waiting tracked saga is parked (`wake_time` = its earliest window end, RUNNING or
  COMPENSATING while it unwinds through events); claimed then, `next_actions` times
  the window out (flag or rescue) like an asynchronous step's;
- a rescue's `SendCompensation` with `event` set is published, not called: check
  `action.event` before building a request (a step with only a compensation event has
  no RPC to build), publish `compensation_command_event(run, index, now, source)`
  through the CommandEventPublisher, then `compensation_event_published(run, index,
  now)` on the broker's confirm, or `run.compensation_failed(...)` when it failed
  (retried by the compensation retry policy, as a failed RPC is);
- `EventOutcome.needs_driving`: an event left a rescue compensation to send; drive the
  saga (its wake time is cleared, so the claim loop also finds it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf import json_format, struct_pb2

from orchestrator.core import tracked_moves
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.incoming import CommandEvent, IncomingEvent, IngestVerdict, JsonValue
from orchestrator.core.machine import SagaRun
from orchestrator.core.moves import SAGA_MOVES, fire
from orchestrator.core.namespaces import DEFAULT_NAMESPACE, qualified
from orchestrator.core.opening import request_fingerprint
from orchestrator.core.records import (
    Lease,
    NewSaga,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
)
from orchestrator.core.tracking import (
    DeclaredEvent,
    EventRole,
    correlation_of,
    event_roles,
    instance_key,
)
from orchestrator.core.waiting import AwaitCompletion

LATE = "arrived after its window"


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """What applying one event did (queued in the run, committed by the caller).

    `verdict`: RECORDED (it moved the saga), DUPLICATE (the very event the step
    recorded: nothing written), HELD (early: the caller keeps it and feeds it back
    with `feed_held`; an EVENT_ANOMALY row says so in the log), ANOMALY (logged as an
    EVENT_ANOMALY row, `reason` says why) or IGNORED (the type declares no such event).
    `needs_driving`: the saga now has a rescue compensation to send; hand it to the
    driver (or let the claim loop find it: its wake time is cleared).
    """

    verdict: IngestVerdict
    reason: str = ""
    needs_driving: bool = False


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a waiting tracked saga expects next, and by when (for the console)."""

    step: str
    event_types: tuple[str, ...]
    deadline: datetime | None
    undo: bool
    """True while unwinding: the events that say the step was undone."""


def json_object(data: JsonValue) -> dict[str, Any]:
    """An event's data as a JSON object (a Struct's shape): an object as it is, nothing
    as {}, anything else as {"value": data}."""
    if isinstance(data, dict):
        return data
    if data is None:
        return {}
    return {"value": data}


def _struct_bytes(data: JsonValue) -> bytes:
    return json_format.ParseDict(json_object(data), struct_pb2.Struct()).SerializeToString()


def start_instance(
    definition: SagaDefinition,
    event: IncomingEvent,
    now: datetime,
    saga_id: str,
    namespace: str = DEFAULT_NAMESPACE,
) -> SagaRun:
    """A new instance of tracked type `definition`, started by `event` (one of its
    `started_by` types): RUNNING (SAGA_STARTED, actor event:<source>), its first step
    WAITING with its window from `now`. Its correlation id is the event's correlation
    value, its idempotency key `instance_key` in `namespace` (one instance per
    type and value), its input the event's data. Commit with `take_opening` (the saga's insert).
    ValueError when the event has no correlation value."""
    correlation = correlation_of(definition, event)
    if correlation is None or definition.tracking is None:
        where = definition.tracking.correlation.describe() if definition.tracking else "none"
        raise ValueError(
            f"event {event.type} {event.id} from {event.source} has no correlation value ({where})"
        )
    payload = json_object(event.data)
    saga = SagaRecord(
        saga_id=saga_id,
        saga_type=definition.name,
        definition_version=definition.version,
        correlation_id=correlation,
        payload=payload,
        status=SagaStatus.RUNNING,
        create_time=now,
        update_time=now,
        idempotency_key=qualified(namespace, instance_key(definition.name, correlation)),
        request_fingerprint=request_fingerprint(definition.name, correlation, payload),
        namespace=namespace,
    )
    steps = [
        StepRecord(saga_id=saga_id, index=index, name=step.name)
        for index, step in enumerate(definition.all_steps)
    ]
    run = SagaRun(definition, saga, steps, last_seq=0)
    run._log(
        TransitionEvent.SAGA_STARTED, now, None, error="", actor=event.actor, reason=_cite(event)
    )
    tracked_moves.next_actions(run, now, send=False)
    return run


def take_opening(run: SagaRun, lease: Lease | None = None) -> NewSaga:
    """A new instance's insert: everything queued since `start_instance` (held events
    applied with `feed_held` included)."""
    commit = run.take_commit()
    return NewSaga(commit.saga, tuple(run.steps), commit.transitions, lease)


def _cite(event: IncomingEvent) -> str:
    return f"{event.type} {event.id}"


def _recorded(record: StepRecord) -> tuple[str, str] | None:
    """(event type, "type source id") of the event that completed or failed the step."""
    kind, _, rest = record.completion_id.partition(":")
    if kind not in ("completed", "failed") or not rest:
        return None
    return rest.split(" ", 1)[0], rest


def _key(event: IncomingEvent) -> str:
    return f"{event.type} {event.source} {event.id}"


@dataclass(frozen=True, slots=True)
class _Decision:
    verdict: IngestVerdict
    reason: str = ""


_APPLY = _Decision(IngestVerdict.RECORDED)


def _decide(run: SagaRun, declared: DeclaredEvent, key: str = "") -> _Decision:
    """What an event of this role does to the run as it stands (nothing queued)."""
    if declared.role is EventRole.START:
        return _Decision(IngestVerdict.ANOMALY, "a second start event")
    index = declared.index
    status = run.step_status(index)
    recorded = _recorded(run.steps[index])
    forward = declared.role in (EventRole.COMPLETES, EventRole.FAILS)
    if forward and recorded is not None and key and recorded[1] == key:
        return _Decision(IngestVerdict.DUPLICATE, "already recorded")
    if run.status.is_terminal and not run.saga.needs_intervention:
        return _Decision(IngestVerdict.ANOMALY, "after the saga ended")
    if run.saga.needs_intervention:
        return _decide_flagged(run, declared, recorded, key)
    if run.status is SagaStatus.RUNNING:
        if declared.role is EventRole.UNDOES:
            return _Decision(IngestVerdict.HELD, f"early: held until {declared.step} is undone")
        current = next(
            i for i in range(len(run.steps)) if run.step_status(i) is not StepStatus.COMPLETED
        )
        if index == current and status is StepStatus.WAITING:
            return _APPLY
        if index >= current:
            return _Decision(IngestVerdict.HELD, f"early: held until {declared.step} is expected")
        return _Decision(IngestVerdict.ANOMALY, _conflict(run, index, recorded, key))
    # COMPENSATING
    if declared.role is EventRole.UNDOES:
        if status is StepStatus.COMPENSATING:
            return _APPLY
        if status in (StepStatus.COMPLETED, StepStatus.WAITING, StepStatus.STARTED):
            # Its turn to be undone has not come (a rescue reaches a waiting step too).
            return _Decision(IngestVerdict.HELD, f"early: held until {declared.step} is undone")
        if status is StepStatus.COMPENSATED:
            return _Decision(IngestVerdict.ANOMALY, f"{declared.step} was undone already")
    elif recorded is not None:
        return _Decision(IngestVerdict.ANOMALY, _conflict(run, index, recorded, key))
    return _Decision(IngestVerdict.ANOMALY, f"unexpected in phase {run.status}")


def _decide_flagged(
    run: SagaRun, declared: DeclaredEvent, recorded: tuple[str, str] | None, key: str
) -> _Decision:
    """A saga waiting for an operator: the stuck step's own event, late, still counts
    (the flow went on after all); later events wait for their turn."""
    stuck = run.stuck_step()
    index = declared.index
    status = run.step_status(index)
    stuck_status = run.step_status(stuck)
    if declared.role is EventRole.UNDOES:
        if index == stuck and stuck_status is StepStatus.COMPENSATION_FAILED:
            return _APPLY
        if status is StepStatus.COMPLETED:
            return _Decision(IngestVerdict.HELD, f"early: held until {declared.step} is undone")
    elif stuck_status is StepStatus.FAILED and recorded is None:
        if index == stuck:
            return _APPLY
        if index > stuck:
            return _Decision(IngestVerdict.HELD, f"early: held until {declared.step} is expected")
    if recorded is not None:
        return _Decision(IngestVerdict.ANOMALY, _conflict(run, index, recorded, key))
    return _Decision(
        IngestVerdict.ANOMALY,
        f"unexpected while step {run.steps[stuck].name} waits for an operator",
    )


def _conflict(run: SagaRun, index: int, recorded: tuple[str, str] | None, key: str) -> str:
    if recorded is None:
        return f"unexpected: step {run.steps[index].name} is {run.step_status(index)}"
    if key.split(" ", 1)[0] == recorded[0]:
        return f"repeats the recorded {recorded[0]} (a different event id)"
    return f"conflicts with the recorded {recorded[0]}"


def apply_event(run: SagaRun, event: IncomingEvent, now: datetime) -> EventOutcome:
    """Apply one event (not a start: see `start_instance`) to its instance; queue what it
    records and settle the saga (the next step waits, or it completes, unwinds, fails).

    A window that had passed by `now` times out first, so an event after its deadline
    finds the saga flagged (it still counts: the step completes late and the saga
    goes on) or rescuing (an anomaly). An early event is HELD (an EVENT_ANOMALY row
    says so); give it back through `feed_held` when `held_ready` includes its type.
    """
    declared = event_roles(run.definition).get(event.type)
    if declared is None:
        return EventOutcome(
            IngestVerdict.IGNORED, f"{run.definition.name} declares no {event.type}"
        )
    tracked_moves.next_actions(run, now, send=False)
    decision = _decide(run, declared, _key(event))
    if decision.verdict is IngestVerdict.DUPLICATE:
        return EventOutcome(decision.verdict, decision.reason)
    if decision.verdict is not IngestVerdict.RECORDED:
        step = None if declared.index < 0 else declared.index
        run._log(
            TransitionEvent.EVENT_ANOMALY,
            now,
            step,
            error="",
            actor=event.actor,
            reason=f"{_cite(event)}: {decision.reason}",
        )
        return EventOutcome(decision.verdict, decision.reason)
    _record(run, declared, event, now)
    actions = tracked_moves.next_actions(run, now, send=False)
    parked = any(isinstance(action, AwaitCompletion) for action in actions)
    return EventOutcome(
        IngestVerdict.RECORDED,
        needs_driving=run.status is SagaStatus.COMPENSATING and not parked,
    )


def _record(run: SagaRun, declared: DeclaredEvent, event: IncomingEvent, now: datetime) -> None:
    index = declared.index
    name = declared.step
    status = run.step_status(index)
    actor = event.actor
    if declared.role is EventRole.COMPLETES:
        changes: dict[str, Any] = {
            "result": _struct_bytes(event.data),
            "error": "",
            "completion_id": f"completed:{_key(event)}",
            "wait_deadline": None,
            "next_attempt_time": None,
        }
        if status is StepStatus.WAITING:
            run._fire_step(
                index,
                "succeed",
                TransitionEvent.STEP_COMPLETED,
                now,
                actor,
                _cite(event),
                **changes,
            )
            return
        run._fire_step(  # flagged after its window: the flow went on after all
            index,
            "resolve_forward",
            TransitionEvent.STEP_COMPLETED,
            now,
            actor,
            f"{_cite(event)}: {LATE}",
            **changes,
        )
        run._set_saga(now, needs_intervention=False, failure_reason="", failed_step="")
        _resume(run, "resume_forward", now)
        return
    if declared.role is EventRole.FAILS:
        participant = run.definition.all_steps[index].participant
        error = f"refused by {participant}: {event.type}"
        if status is StepStatus.WAITING:
            run._fire_step(
                index,
                "fail",
                TransitionEvent.STEP_FAILED,
                now,
                actor,
                _cite(event),
                error=error,
                completion_id=f"failed:{_key(event)}",
                wait_deadline=None,
            )
            run._begin_compensating(index, error, now)
            return
        run._update_step(index, now, error=error, completion_id=f"failed:{_key(event)}")
        run._log(TransitionEvent.STEP_FAILED, now, index, error, actor, f"{_cite(event)}: {LATE}")
        reason = f"step {name} failed: {error}"
        run._set_saga(now, needs_intervention=False, failure_reason=reason, failed_step=name)
        _resume(run, "resume_compensation", now)
        run._log(TransitionEvent.SAGA_COMPENSATING, now, None, error=reason)
        return
    undone = {"error": "", "wait_deadline": None, "wait_until": None, "next_attempt_time": None}
    if status is StepStatus.COMPENSATING:
        run._fire_step(
            index,
            "compensated",
            TransitionEvent.COMPENSATION_COMPLETED,
            now,
            actor,
            _cite(event),
            **undone,
        )
        return
    run._fire_step(
        index,
        "resolve_compensation",
        TransitionEvent.COMPENSATION_COMPLETED,
        now,
        actor,
        f"{_cite(event)}: {LATE}",
        **undone,
    )
    run._set_saga(now, needs_intervention=False)
    _resume(run, "resume_compensation", now)


def _resume(run: SagaRun, trigger: str, now: datetime) -> None:
    fire(SAGA_MOVES, run._saga_model, trigger, f"saga {run.saga.saga_id}")
    run._set_saga(now, status=run.status)


def held_ready(run: SagaRun) -> frozenset[str]:
    """The event types the run would take now rather than hold: the held events of
    these types are due (`feed_held`). Once the saga has ended, every type it declares
    (held leftovers become anomalies in its log rather than expiring unseen)."""
    return frozenset(
        event_type
        for event_type, declared in event_roles(run.definition).items()
        if _decide(run, declared).verdict is not IngestVerdict.HELD
    )


def feed_held(
    run: SagaRun, held: Sequence[IncomingEvent], now: datetime
) -> list[tuple[IncomingEvent, EventOutcome]]:
    """Apply the held events that are due, in the order given (the order received),
    again and again until none is: each one applied may make another due. Returns the
    ones applied with their outcomes (the caller deletes them from the held events);
    the others stay held."""
    pending = list(held)
    applied: list[tuple[IncomingEvent, EventOutcome]] = []
    while True:
        ready = held_ready(run)
        due = next((event for event in pending if event.type in ready), None)
        if due is None:
            return applied
        pending.remove(due)
        applied.append((due, apply_event(run, due, now)))


def expectations(run: SagaRun) -> tuple[Expectation, ...]:
    """What the saga waits for now: each waiting step's event types and deadline."""
    found: list[Expectation] = []
    for index, step in enumerate(run.definition.all_steps):
        observed = step.observed
        status = run.step_status(index)
        deadline = run.steps[index].wait_deadline
        if observed is None or deadline is None:
            continue
        if status is StepStatus.WAITING:
            types = (*observed.completes_on, *observed.fails_on)
            found.append(Expectation(step.name, types, deadline, undo=False))
        elif status is StepStatus.COMPENSATING:
            found.append(Expectation(step.name, observed.compensated_on, deadline, undo=True))
    return tuple(found)


def compensation_command_event(
    run: SagaRun, index: int, now: datetime, source: str = "saga-orchestrator"
) -> CommandEvent:
    """The event a rescue publishes to undo step `index` (its `compensation_event`): id
    "<saga_id>:<step>:compensate" (a resend is a duplicate to the service), data the
    saga id, step, correlation value and the step's result (its completing event's
    data; null when it never completed)."""
    step = run.definition.all_steps[index]
    observed = step.observed
    if observed is None or not observed.compensation_event:
        raise ValueError(f"step {step.name} has no compensation event")
    record = run.steps[index]
    result: JsonValue = None
    if record.result is not None:
        result = json_format.MessageToDict(struct_pb2.Struct.FromString(record.result))
    saga = run.saga
    return CommandEvent(
        id=f"{saga.saga_id}:{step.name}:compensate",
        type=observed.compensation_event,
        source=source,
        subject=saga.correlation_id,
        data={
            "saga_id": saga.saga_id,
            "step": step.name,
            "correlation": saga.correlation_id,
            "result": result,
        },
        time=now,
    )


def compensation_event_published(run: SagaRun, index: int, now: datetime) -> None:
    """The broker confirmed a rescue's compensation event: the step waits for its undo
    event when it declares one (within its window), else it counts as compensated."""
    step = tracked_moves.observed(run, index)
    if step.compensated_on:
        tracked_moves.wait_for_undo(
            run,
            index,
            now,
            reason=f"{step.compensation_event} published; expecting "
            f"{tracked_moves.expected_text(step.compensated_on)} within {step.within:g}s",
        )
        return
    run.compensation_succeeded(index, now)


__all__ = [
    "EventOutcome",
    "Expectation",
    "apply_event",
    "compensation_command_event",
    "compensation_event_published",
    "expectations",
    "feed_held",
    "held_ready",
    "json_object",
    "start_instance",
    "take_opening",
]
