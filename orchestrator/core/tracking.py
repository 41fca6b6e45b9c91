"""Tracked (choreographed) saga types: the DSL, correlation, and the event-type index.

A tracked saga type is an ordinary `SagaDefinition` whose steps are *observed*: its
services talk to each other through events, and the orchestrator only follows them.
Each step names the CloudEvent types that complete it, fail it and undo it, and the
time within which it must happen; the definition names the events that start an
instance and how an event finds its instance (its correlation value).

    TRAVEL = tracked_saga(
        "travel_choreography", version=1,
        started_by=("com.example.travel.booking_started",),
        correlation=Correlation(data_path="booking_id"),
        steps=(
            TrackedStep("book_flight", participant="flight",
                        completes_on=("com.example.travel.flight_booked",),
                        fails_on=("com.example.travel.flight_booking_failed",),
                        within=30.0,
                        compensated_on=("com.example.travel.flight_cancelled",),
                        compensation_event="com.example.travel.cancel_flight"),
            ...
        ),
    )

The saga's input is the start event's `data` as a `google.protobuf.Struct`, and a
step's result the `data` of the event that completed it (a Struct too), so a
compensation `Call` builder reads `ctx.result` like any builder. What events do to an
instance is in orchestrator/core/observing.py; nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from google.protobuf import struct_pb2

from orchestrator.core.definition import Call, SagaDefinition, Step
from orchestrator.core.incoming import IncomingEvent

if TYPE_CHECKING:
    from orchestrator.core.registry import Registry

TRACKED_INPUT = struct_pb2.Struct
"""The input message of every tracked saga type: the start event's data."""

TRACKED_KEY_PREFIX = "tracked:"
"""A tracked instance's idempotency key is this, its saga type and its correlation value
(`instance_key`), so one (saga type, correlation, namespace) has one instance however
many replicas ingest it, and two types correlating on the same value do not collide."""


def instance_key(saga_type: str, correlation: str) -> str:
    """The idempotency key (before its namespace) of a tracked type's instance."""
    return f"{TRACKED_KEY_PREFIX}{saga_type}:{correlation}"


class OnStuck(enum.Enum):
    """What a tracked saga does when a step misses its window (forward or unwinding)."""

    NEEDS_INTERVENTION = "needs_intervention"
    """Flag it for an operator (the default: the orchestrator does not own the flow)."""
    COMPENSATE = "compensate"
    """Rescue it: the orchestrator undoes the completed steps itself, in reverse order,
    with each step's `compensation` call or `compensation_event`."""


@dataclass(frozen=True, slots=True)
class Correlation:
    """How an event names its instance: a CloudEvents extension attribute (`extension`,
    e.g. "bookingid") or a dotted path into the event's JSON `data` (`data_path`,
    e.g. "booking.id"); exactly one of the two."""

    extension: str = ""
    data_path: str = ""

    def describe(self) -> str:
        """For people: "extension bookingid" or "data.booking_id"."""
        if self.extension:
            return f"extension {self.extension}"
        return f"data.{self.data_path}"


@dataclass(frozen=True, slots=True)
class Observed:
    """What moves an observed step: the event types that complete it (`completes_on`)
    or fail it (`fails_on`), the seconds within which one must come after the previous
    step's event (`within`), the event types that say its service undid it
    (`compensated_on`), and the event the orchestrator publishes to undo it in a rescue
    (`compensation_event`, instead of a `compensation` call on the step)."""

    completes_on: tuple[str, ...]
    within: float
    fails_on: tuple[str, ...] = ()
    compensated_on: tuple[str, ...] = ()
    compensation_event: str = ""

    @property
    def event_types(self) -> tuple[str, ...]:
        """Every event type the step declares."""
        return (*self.completes_on, *self.fails_on, *self.compensated_on)


@dataclass(frozen=True, slots=True)
class Tracking:
    """What makes a definition tracked: the event types that start an instance, how
    events are correlated to it, and what a stuck instance leads to."""

    started_by: tuple[str, ...]
    correlation: Correlation
    on_stuck: OnStuck = OnStuck.NEEDS_INTERVENTION


def _types(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def TrackedStep(
    name: str,
    participant: str,
    *,
    completes_on: str | Iterable[str],
    within: float,
    fails_on: str | Iterable[str] = (),
    compensated_on: str | Iterable[str] = (),
    compensation_event: str = "",
    compensation: Call | None = None,
) -> Step:
    """An observed step: no action; the events named here move it. A single event type
    may be given as a string. `compensation` (a typed gRPC call) or `compensation_event`
    (an event type) is what a rescue sends to undo it; at most one of the two."""
    return Step(
        name=name,
        participant=participant,
        action=None,
        compensation=compensation,
        observed=Observed(
            completes_on=_types(completes_on),
            within=within,
            fails_on=_types(fails_on),
            compensated_on=_types(compensated_on),
            compensation_event=compensation_event,
        ),
    )


def tracked_saga(
    name: str,
    *,
    version: int,
    started_by: str | Iterable[str],
    correlation: Correlation,
    steps: Iterable[Step],
    on_stuck: OnStuck = OnStuck.NEEDS_INTERVENTION,
    description: str = "",
) -> SagaDefinition:
    """A tracked saga type: a `SagaDefinition` with `tracking` set, a Struct input (the
    start event's data) and observed steps (`TrackedStep`). Checked when registered,
    like every definition (orchestrator/core/definition_checks.py)."""
    return SagaDefinition(
        name=name,
        version=version,
        input_type=TRACKED_INPUT,
        steps=tuple(steps),
        description=description,
        tracking=Tracking(
            started_by=_types(started_by), correlation=correlation, on_stuck=on_stuck
        ),
    )


# --- what an event is to a definition -----------------------------------------------


class EventRole(enum.Enum):
    """What an event type does in a tracked saga type."""

    START = "start"
    COMPLETES = "completes"
    FAILS = "fails"
    UNDOES = "undoes"
    """A `compensated_on` event: the step's service undid it."""


@dataclass(frozen=True, slots=True)
class DeclaredEvent:
    """One event type of a tracked definition: its role and the step it moves (-1 and
    "" for a start event)."""

    role: EventRole
    index: int = -1
    step: str = ""


_ROLES: dict[int, tuple[SagaDefinition, Mapping[str, DeclaredEvent]]] = {}


def event_roles(definition: SagaDefinition) -> Mapping[str, DeclaredEvent]:
    """Each event type the tracked definition declares, with its role (computed once per
    definition; the load-time checks make each type appear once)."""
    cached = _ROLES.get(id(definition))
    if cached is not None and cached[0] is definition:
        return cached[1]
    tracking = definition.tracking
    roles: dict[str, DeclaredEvent] = {}
    if tracking is not None:
        for event_type in tracking.started_by:
            roles.setdefault(event_type, DeclaredEvent(EventRole.START))
        for index, step in enumerate(definition.all_steps):
            if step.observed is None:
                continue
            for role, types in (
                (EventRole.COMPLETES, step.observed.completes_on),
                (EventRole.FAILS, step.observed.fails_on),
                (EventRole.UNDOES, step.observed.compensated_on),
            ):
                for event_type in types:
                    roles.setdefault(event_type, DeclaredEvent(role, index, step.name))
    _ROLES[id(definition)] = (definition, roles)
    return roles


def correlation_of(definition: SagaDefinition, event: IncomingEvent) -> str | None:
    """The event's correlation value for this tracked type: its extension attribute, or
    the value at the data path (a string, or an integer written in decimal); None when
    the event has none (it cannot be correlated: an anomaly)."""
    tracking = definition.tracking
    if tracking is None:
        raise ValueError(f"saga type {definition.name!r} is not tracked")
    correlation = tracking.correlation
    if correlation.extension:
        value = event.extensions.get(correlation.extension)
        return value or None
    found: object = event.data
    for part in correlation.data_path.split("."):
        if not isinstance(found, dict) or part not in found:
            return None
        found = found[part]
    if isinstance(found, bool):
        return None
    if isinstance(found, str):
        return found or None
    if isinstance(found, int):
        return str(found)
    if isinstance(found, float) and found.is_integer():
        return str(int(found))
    return None


@dataclass(frozen=True, slots=True)
class TrackedRole:
    """One tracked type declaring an event type: the definition (the newest version
    that declares it), the role, and the step."""

    definition: SagaDefinition
    role: EventRole
    step: str = ""


@runtime_checkable
class _HasDefinitions(Protocol):
    @property
    def definitions(self) -> list[SagaDefinition]: ...


class TrackedTypes:
    """The registry's tracked types indexed by event type, for the ingestor: which
    types (and roles) an incoming event concerns, and every event type to subscribe to.

    Built from a `Registry` or from definitions. An instance runs on the version it
    started with (`observing.apply_event` reads its own definition); this index only
    routes, so it keeps, per saga type, the newest version declaring each event type.
    """

    __slots__ = ("_roles", "definitions")

    def __init__(self, registry: Registry | Iterable[SagaDefinition]) -> None:
        definitions: Iterable[SagaDefinition] = (
            registry.definitions if isinstance(registry, _HasDefinitions) else registry
        )
        tracked = [d for d in definitions if d.tracking is not None]
        tracked.sort(key=lambda d: (d.name, d.version))
        newest: dict[tuple[str, str], TrackedRole] = {}
        for definition in tracked:  # newer versions overwrite older ones
            for event_type, declared in event_roles(definition).items():
                newest[(event_type, definition.name)] = TrackedRole(
                    definition, declared.role, declared.step
                )
        roles: dict[str, list[TrackedRole]] = {}
        for (event_type, _), role in sorted(newest.items(), key=lambda item: item[0]):
            roles.setdefault(event_type, []).append(role)
        self.definitions: tuple[SagaDefinition, ...] = tuple(tracked)
        """Every tracked definition registered, every version."""
        self._roles: dict[str, tuple[TrackedRole, ...]] = {
            event_type: tuple(found) for event_type, found in roles.items()
        }

    def roles(self, event_type: str) -> tuple[TrackedRole, ...]:
        """The tracked types declaring `event_type` (empty: the event is IGNORED)."""
        return self._roles.get(event_type, ())

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type some tracked type declares (the broker bindings)."""
        return frozenset(self._roles)

    def __bool__(self) -> bool:
        return bool(self.definitions)


__all__ = [
    "TRACKED_INPUT",
    "TRACKED_KEY_PREFIX",
    "Correlation",
    "DeclaredEvent",
    "EventRole",
    "Observed",
    "OnStuck",
    "TrackedRole",
    "TrackedStep",
    "TrackedTypes",
    "Tracking",
    "correlation_of",
    "event_roles",
    "instance_key",
    "tracked_saga",
]
