"""Events out: which transitions a sink selects, and each as a CloudEvent (pure, no I/O).

Every committed transition of a saga's log may be announced to event sinks (a broker, a
webhook endpoint). The store writes one outbox row per selected (transition, sink) in
the transaction that commits the transition (`outbox_events` builds them), so an event
exists if and only if its transition committed; a relay publishes the rows later.

An event is a CloudEvents 1.0 event in the structured JSON mode
(`application/cloudevents+json`):

- `id` is `"{saga_id}:{seq}"`: the same on every republish, so consumers deduplicate;
- `type` names the transition, reverse-DNS and versioned (`EVENT_TYPES`);
- `subject` is the saga id, `time` the transition's time (RFC 3339, UTC);
- extensions: `sequence` (the transition's seq, a zero-padded decimal string, so the
  string order of the CloudEvents sequence extension is the numeric order),
  `sagatype`, `correlationid`, `namespace`, and `traceparent` when known;
- `data` is a `saga.v1.SagaEventData` in the protobuf JSON mapping. It carries no input
  payload, ever, and an output only when the sink asks for payloads (`include_payload`),
  up to the sink's cap.

A saga's events go to one partition of each sink (`partition_of`, a stable hash of the
saga id), so a relay that publishes each partition in outbox order keeps every saga's
events in order.
"""

from __future__ import annotations

import base64
import enum
import json
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from orchestrator.core.records import (
    SagaRecord,
    StepRecord,
    TransitionEvent,
    TransitionRecord,
)
from saga.v1 import events_pb2

CONTENT_TYPE = "application/cloudevents+json"
"""The media type of an event's body (the CloudEvents structured JSON mode)."""
DEFAULT_SOURCE = "/saga-orchestrator"
"""The `source` of events when a sink names none."""
DEFAULT_PARTITIONS = 16
DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024
"""The largest output an event carries for a sink that asks for payloads."""
TYPE_PREFIX = "org.saga-orchestrator."
SEQUENCE_DIGITS = 20
"""Width of the `sequence` extension: any seq (a 64-bit integer) zero-padded."""


class EventSet(enum.StrEnum):
    """Which transitions a sink selects."""

    LIFECYCLE = "lifecycle"
    """The saga's own milestones: started, compensating, completed, failed, needs
    intervention, aborted."""
    ALL = "all"
    """Every transition of the log: also each step's, each compensation's, each lock's."""


EVENT_TYPES: Mapping[TransitionEvent, str] = {
    event: f"{TYPE_PREFIX}{name}.v1"
    for event, name in {
        TransitionEvent.SAGA_STARTED: "saga.started",
        TransitionEvent.SAGA_COMPENSATING: "saga.compensating",
        TransitionEvent.SAGA_COMPLETED: "saga.completed",
        TransitionEvent.SAGA_FAILED: "saga.failed",
        TransitionEvent.SAGA_HALTED: "saga.needs_intervention",
        TransitionEvent.SAGA_ABORTED: "saga.aborted",
        TransitionEvent.SAGA_DEADLINE_PASSED: "saga.deadline_passed",
        TransitionEvent.SAGA_RETRIED: "saga.retried",
        TransitionEvent.STEP_STARTED: "step.started",
        TransitionEvent.STEP_RETRY_SCHEDULED: "step.retry_scheduled",
        TransitionEvent.STEP_COMPLETED: "step.succeeded",
        TransitionEvent.STEP_FAILED: "step.failed",
        TransitionEvent.STEP_RESOLVED: "step.resolved",
        TransitionEvent.COMPENSATION_STARTED: "compensation.started",
        TransitionEvent.COMPENSATION_RETRY_SCHEDULED: "compensation.retry_scheduled",
        TransitionEvent.COMPENSATION_COMPLETED: "compensation.succeeded",
        TransitionEvent.COMPENSATION_FAILED: "compensation.failed",
        TransitionEvent.STEP_NOTHING_TO_UNDO: "compensation.nothing_to_undo",
        TransitionEvent.LOCKS_WAITING: "locks.waiting",
        TransitionEvent.LOCKS_ACQUIRED: "locks.acquired",
        TransitionEvent.LOCK_WAIT_EXPIRED: "locks.wait_expired",
        TransitionEvent.LOCKS_REFUSED: "locks.refused",
        TransitionEvent.LOCKS_RELEASED: "locks.released",
        TransitionEvent.LOCK_BROKEN: "locks.broken",
        TransitionEvent.STEP_WAITING: "step.waiting",
        TransitionEvent.STEP_TIMED_OUT: "step.timed_out",
        TransitionEvent.STEP_COMPLETED_LATE: "step.completed_late",
        TransitionEvent.EVENT_ANOMALY: "tracking.event_anomaly",
    }.items()
}
"""The CloudEvents `type` of each transition. A saga that halts (a step that must not
be undone ran out of attempts) is `saga.needs_intervention`; a saga whose compensation
gave up is `saga.failed` with `needsIntervention` set in its data."""

LIFECYCLE_EVENTS = frozenset(
    {
        TransitionEvent.SAGA_STARTED,
        TransitionEvent.SAGA_COMPENSATING,
        TransitionEvent.SAGA_COMPLETED,
        TransitionEvent.SAGA_FAILED,
        TransitionEvent.SAGA_HALTED,
        TransitionEvent.SAGA_ABORTED,
    }
)


@dataclass(frozen=True, slots=True)
class EventSink:
    """A destination of events, as the outbox knows it: its name (the outbox rows' key;
    the relay maps it to a broker or webhooks) and what it selects."""

    name: str
    events: EventSet = EventSet.LIFECYCLE
    saga_types: frozenset[str] = field(default_factory=frozenset)
    """Only sagas of these types; empty for every type."""
    include_payload: bool = False
    """Put a completed saga's output and a succeeded step's reply in the events."""
    partitions: int = DEFAULT_PARTITIONS
    source: str = DEFAULT_SOURCE
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 100:
            raise ValueError("an event sink needs a name of 1 to 100 characters")
        if not 1 <= self.partitions <= 4096:
            raise ValueError(f"event sink {self.name}: partitions must be 1 to 4096")
        if not self.source:
            raise ValueError(f"event sink {self.name}: the source must not be empty")

    def selects(self, saga_type: str, event: TransitionEvent) -> bool:
        if self.saga_types and saga_type not in self.saga_types:
            return False
        return self.events is EventSet.ALL or event in LIFECYCLE_EVENTS


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One outbox row: an event for one sink, written with the transition it announces."""

    sink: str
    partition: int
    saga_id: str
    seq: int
    event_type: str
    body: bytes
    """The CloudEvent, structured JSON (`CONTENT_TYPE`)."""

    @property
    def event_id(self) -> str:
        return event_id(self.saga_id, self.seq)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An outbox row as the relay reads it: `id` orders a (sink, partition)'s rows."""

    id: int
    sink: str
    partition: int
    saga_id: str
    seq: int
    event_type: str
    body: bytes
    created_at: datetime

    @property
    def event_id(self) -> str:
        return event_id(self.saga_id, self.seq)


@dataclass(frozen=True, slots=True)
class SinkBacklog:
    """A sink's undelivered events: how many, and when the oldest was written."""

    sink: str
    pending: int
    oldest: datetime


@dataclass(frozen=True, slots=True)
class PartitionClaim:
    """A relay's lease on one partition of a sink, at the version its claim gave it: the
    relay's deletes in that partition succeed only while the partition is still its own
    at that version (a later claim by another relay bumps it)."""

    sink: str
    partition: int
    version: int


@dataclass(frozen=True, slots=True)
class DeadEvent:
    """An outbox row the relay gives up on (its broker refused it `attempts` times)."""

    id: int
    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one relay round settles in a partition it claimed: the rows the broker
    confirmed (deleted) and the event it gave up on, if any (dead-lettered)."""

    claim: PartitionClaim
    delivered: Sequence[int]
    dead: DeadEvent | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered event as operators list it (the body stays in the store)."""

    id: int
    sink: str
    partition: int
    saga_id: str
    seq: int
    event_type: str
    attempts: int
    error: str
    created_at: datetime
    dead_at: datetime

    @property
    def event_id(self) -> str:
        return event_id(self.saga_id, self.seq)


@dataclass(frozen=True, slots=True)
class PartitionLease:
    """Who holds one partition of a sink, and until when (None: nobody)."""

    sink: str
    partition: int
    owner: str | None
    expires_at: datetime | None


def event_id(saga_id: str, seq: int) -> str:
    """The CloudEvents `id` of a transition's event: the same on every (re)publish."""
    return f"{saga_id}:{seq}"


def partition_of(saga_id: str, partitions: int) -> int:
    """The sink partition of a saga's events: a hash stable across processes and versions
    (CRC-32 of the UTF-8 id; Python's `hash` of a str changes per process)."""
    return zlib.crc32(saga_id.encode("utf-8", "surrogatepass")) % partitions


def rfc3339(moment: datetime) -> str:
    """`moment` in UTC as RFC 3339 with microseconds and a `Z`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_data(
    saga: SagaRecord,
    transition: TransitionRecord,
    sink: EventSink,
    output: bytes | None = None,
) -> events_pb2.SagaEventData:
    """The `data` of a transition's event; `output` goes in only if the sink asks for
    payloads and it fits the sink's cap."""
    data = events_pb2.SagaEventData(
        saga_id=saga.saga_id,
        namespace=saga.namespace,
        saga_type=saga.saga_type,
        saga_version=saga.definition_version,
        correlation_id=saga.correlation_id,
        status=f"SAGA_STATUS_{transition.saga_status.value}",
        step=transition.step,
        attempt=transition.attempt,
        error=transition.error,
        needs_intervention=saga.needs_intervention,
    )
    if sink.include_payload and output is not None and len(output) <= sink.max_output_bytes:
        data.output = output
        data.output_included = True
    return data


def render_event(
    saga: SagaRecord,
    transition: TransitionRecord,
    sink: EventSink,
    *,
    output: bytes | None = None,
    traceparent: str | None = None,
) -> bytes:
    """The CloudEvent announcing `transition` of `saga` to `sink`, as structured JSON
    bytes (see the module). `saga` is the saga's row as the transition's commit left it."""
    event: dict[str, object] = {
        "specversion": "1.0",
        "id": event_id(saga.saga_id, transition.seq),
        "source": sink.source,
        "type": EVENT_TYPES[transition.event],
        "subject": saga.saga_id,
        "time": rfc3339(transition.time),
        "datacontenttype": "application/json",
        "sequence": str(transition.seq).zfill(SEQUENCE_DIGITS),
        "sagatype": saga.saga_type,
        "namespace": saga.namespace,
    }
    if saga.correlation_id:
        event["correlationid"] = saga.correlation_id
    if traceparent:
        event["traceparent"] = traceparent
    event["data"] = data_json(saga, transition, sink, output)
    # ASCII: any text a store took (a lone surrogate included) renders as valid bytes.
    return json.dumps(event, separators=(",", ":")).encode("ascii")


def data_json(
    saga: SagaRecord,
    transition: TransitionRecord,
    sink: EventSink,
    output: bytes | None = None,
) -> dict[str, object]:
    """`event_data` in the protobuf JSON mapping (lowerCamelCase names, fields at their
    default left out, the enum by name, bytes in base64), built directly: the writer
    renders every event inside the commit path, and `json_format.MessageToDict` costs
    several times more. `tests/unit/test_events.py` holds the two equal."""
    fields: dict[str, object] = {
        "sagaId": saga.saga_id,
        "namespace": saga.namespace,
        "sagaType": saga.saga_type,
        "sagaVersion": saga.definition_version,
        "correlationId": saga.correlation_id,
        "status": f"SAGA_STATUS_{transition.saga_status.value}",
        "step": transition.step,
        "attempt": transition.attempt,
        "error": transition.error,
        "needsIntervention": saga.needs_intervention,
    }
    if sink.include_payload and output is not None and len(output) <= sink.max_output_bytes:
        fields["output"] = base64.b64encode(output).decode("ascii")
        fields["outputIncluded"] = True
    return {name: value for name, value in fields.items() if value not in ("", 0, False)}


def transition_output(
    saga: SagaRecord, transition: TransitionRecord, steps: Iterable[StepRecord]
) -> bytes | None:
    """What `transition` produced, as stored: a completed saga's output, a succeeded
    step's reply (found among the `steps` written with it); None otherwise."""
    if transition.event is TransitionEvent.SAGA_COMPLETED:
        return saga.output
    if transition.event is TransitionEvent.STEP_COMPLETED:
        for step in steps:
            if step.name == transition.step:
                return step.result
    return None


def outbox_events(
    sinks: Collection[EventSink],
    saga: SagaRecord,
    transitions: Iterable[TransitionRecord],
    steps: Iterable[StepRecord] = (),
) -> list[OutboxEvent]:
    """The outbox rows of a commit: one per (transition some sink selects, that sink), in
    the order of the transitions. `saga` and `steps` are the rows the commit writes."""
    rows: list[OutboxEvent] = []
    if not sinks:
        return rows
    step_rows = tuple(steps)
    for transition in transitions:
        for sink in sinks:
            if not sink.selects(saga.saga_type, transition.event):
                continue
            output = (
                transition_output(saga, transition, step_rows) if sink.include_payload else None
            )
            rows.append(
                OutboxEvent(
                    sink=sink.name,
                    partition=partition_of(saga.saga_id, sink.partitions),
                    saga_id=saga.saga_id,
                    seq=transition.seq,
                    event_type=EVENT_TYPES[transition.event],
                    body=render_event(saga, transition, sink, output=output),
                )
            )
    return rows


_FLAGGING = frozenset({TransitionEvent.SAGA_HALTED})
_CLEARING = frozenset({TransitionEvent.SAGA_RETRIED, TransitionEvent.STEP_RESOLVED})


def intervention_by_seq(saga: SagaRecord, log: Sequence[TransitionRecord]) -> dict[int, bool]:
    """Whether the saga needed an operator once each transition of its whole `log` had
    committed, as its events said when first rendered.

    The log keeps no commit boundaries, but the transitions of one commit share its time:
    each group of consecutive transitions with the same time gets the flag as its last
    transition left it (halted, or failed after a compensation gave up: set; retried or
    resolved: cleared). The newest group gets the saga row's own flag."""
    flags: dict[int, bool] = {}
    flag = False
    group: list[int] = []
    previous: TransitionRecord | None = None
    for transition in log:
        if previous is not None and transition.time != previous.time:
            flags.update(dict.fromkeys(group, flag))
            group = []
        if transition.event in _FLAGGING or (
            transition.event is TransitionEvent.SAGA_FAILED
            and previous is not None
            and previous.event is TransitionEvent.COMPENSATION_FAILED
        ):
            flag = True
        elif transition.event in _CLEARING:
            flag = False
        group.append(transition.seq)
        previous = transition
    flags.update(dict.fromkeys(group, saga.needs_intervention))
    return flags


def replayed_events(
    sinks: Collection[EventSink],
    saga: SagaRecord,
    log: Sequence[TransitionRecord],
    steps: Iterable[StepRecord],
    seqs: Collection[int],
) -> list[OutboxEvent]:
    """The outbox rows of the transitions `seqs` of a saga's whole `log`, rendered again
    by `outbox_events` with the saga's row as each transition's commit left it (the flag
    `needs_intervention` from `intervention_by_seq`): the same ids, the same selection,
    the same data. `saga` and `steps` are the rows as stored now (outputs only grow)."""
    flags = intervention_by_seq(saga, log)
    step_rows = tuple(steps)
    rows: list[OutboxEvent] = []
    for transition in log:
        if transition.seq not in seqs:
            continue
        as_then = replace(saga, needs_intervention=flags[transition.seq])
        rows.extend(outbox_events(sinks, as_then, [transition], step_rows))
    return rows
