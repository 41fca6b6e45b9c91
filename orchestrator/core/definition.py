"""The saga definition DSL: frozen dataclasses the executor walks.

A definition is data: steps name a participant and the typed RPCs of its action
and compensation, and functions that build each request from the saga input
and the results stored so far. Nothing here talks to the network or a database.

    SagaDefinition(
        name="travel_booking", version=1, input_type=TravelBookingInput,
        steps=(
            Step("book_flight", participant="flight",
                 action=Call(FLIGHT, "BookFlight", build_book_flight),
                 compensation=Call(FLIGHT, "CancelFlight", build_cancel_flight)),
            ...
        ),
    )
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.protobuf.message import Message

if TYPE_CHECKING:
    from orchestrator.core.tracking import Observed, Tracking

CONTEXT_FIELD = "context"
"""The request field of type saga.participants.common.v1.CommandContext that the engine fills."""

CONTEXT_MESSAGE = "saga.participants.common.v1.CommandContext"


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a request builder may read: the saga's input and the stored results.

    `results` maps step names to the participant's reply for every completed
    step before this one; `result` is this step's own reply (for compensations;
    None when the action's reply was never received).
    """

    saga_id: str
    input: Message
    results: Mapping[str, Message]
    result: Message | None = None

    def result_of(self, step: str) -> Message:
        """The reply of an earlier step; KeyError names the step when it has none."""
        try:
            return self.results[step]
        except KeyError:
            raise KeyError(f"no stored result for step {step!r}") from None


RequestBuilder = Callable[[StepContext], Message]
OutputBuilder = Callable[[StepContext], Message]
"""Builds a COMPLETED saga's output from its input and every step's reply (`ctx.results`)."""
InputCheck = Callable[[Message], None]
"""Raises ValueError, with a message for the caller, when a well-formed input makes no sense."""


@dataclass(frozen=True, slots=True)
class Call:
    """One typed unary RPC: the full proto service name, the method, the request builder."""

    service: str
    method: str
    request: RequestBuilder


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a command is retried on a transient error, with the same idempotency key.

    The n-th retry waits min(initial_backoff * multiplier**(n-1), max_backoff)
    seconds, spread by +/- jitter (a fraction). UNAVAILABLE, DEADLINE_EXCEEDED,
    RESOURCE_EXHAUSTED and ABORTED are always transient; `retry_codes` names more
    gRPC codes (e.g. "INTERNAL") to treat the same way.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2
    retry_codes: frozenset[str] = frozenset()

    def backoff(self, attempt: int, unit_random: float) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based); unit_random in [0, 1)."""
        base = min(self.initial_backoff * self.multiplier ** (attempt - 1), self.max_backoff)
        return max(0.0, base * (1.0 + self.jitter * (2.0 * unit_random - 1.0)))


class OnTimeout(enum.Enum):
    """What an asynchronous step's timeout leads to: its outcome is unknown either way."""

    COMPENSATE = "compensate"
    """Undo the step (its compensation carries the compensated key, so work that
    finished late is undone) and every step before it."""
    NEEDS_INTERVENTION = "needs_intervention"
    """Halt the saga for an operator, who retries, resolves or aborts it."""


@dataclass(frozen=True, slots=True)
class AsyncCompletion:
    """Marks a step asynchronous: its action's reply only says the participant accepted
    the work, which it completes later through the SagaCallbacks service with the
    completion token of its command (CommandContext.completion_token).

    `timeout` (seconds) bounds the whole wait from acceptance; `heartbeat_timeout`, if
    set, is how long the step may go without a heartbeat; `result_type` is the message
    a completion must carry: later builders, compensations and the output read it as
    the step's result, like a synchronous reply.
    """

    result_type: type[Message]
    timeout: float
    heartbeat_timeout: float | None = None
    on_timeout: OnTimeout = OnTimeout.COMPENSATE


DEFAULT_ACTION_RETRY = RetryPolicy()
DEFAULT_COMPENSATION_RETRY = RetryPolicy(max_attempts=10, initial_backoff=0.1, max_backoff=5.0)


@dataclass(frozen=True, slots=True)
class Step:
    """One step: an action on a participant and, unless irreversible, its compensation.

    An *observed* step (`observed` set, made by `TrackedStep`, in a tracked saga type)
    has no action: nothing is sent to start it, the events its services publish
    complete, fail or undo it (orchestrator/core/tracking.py).

    `timeout` is the gRPC deadline of each attempt, in seconds. A step without a
    compensation (and not `read_only`) is a pivot: it cannot be undone, so every
    step after it must be `retriable`. Once the pivot has completed the saga only
    goes forward; a pivot its participant refuses compensates the steps before it,
    like any other step.

    A `read_only` step changes nothing (it checks or reads, e.g. "verify the
    consumer"): it has no compensation yet is no pivot. A rollback passes over it
    without a command and marks it NOTHING_TO_UNDO; steps after it need not be
    retriable on its account.

    A `retriable` step is one that succeeds if asked often enough: every error,
    a participant's rejection included, is retried with its policy; if attempts
    run out, the saga stops and waits for an operator instead of compensating.
    """

    name: str
    participant: str
    action: Call | None = None
    """None only for an observed step."""
    compensation: Call | None = None
    timeout: float = 5.0
    retry: RetryPolicy | None = None
    compensation_retry: RetryPolicy | None = None
    retriable: bool = False
    read_only: bool = False
    completion: AsyncCompletion | None = None
    """Set for an asynchronous step: accepted by its action, completed later."""
    observed: Observed | None = None
    """Set for an observed step of a tracked saga type: the events that move it."""

    @property
    def is_pivot(self) -> bool:
        """True for a step that changes something and cannot be undone. An observed step
        is never a pivot: the orchestrator does not command the flow, so no later step
        is held to the pivot's rule (what a refusal unwinds is what can be undone)."""
        return self.compensation is None and not self.read_only and self.observed is None


PIVOT_OUTCOMES: tuple[str, ...] = (
    "completed: the saga only goes forward; later steps are retried, and an operator "
    "decides if one still fails",
    "refused by its participant: nothing happened there; the steps before it are compensated",
    "outcome unknown (attempts ran out without an answer): the saga stops for an operator, "
    "who retries or resolves it; it is never compensated",
    "once it has started, neither an abort nor the saga's deadline stops the saga",
)
"""What each outcome of the pivot does, as `saga describe` and the catalogue say it."""


@dataclass(frozen=True, slots=True)
class Parallel:
    """Steps that run at the same time (fan-out); the saga moves on once all completed.

    If a member fails, the members still in flight are awaited, then every member
    that completed (or whose outcome is unknown) is compensated, then the earlier
    steps, in reverse order.
    """

    name: str
    steps: tuple[Step, ...]


class LockPolicy(enum.Enum):
    """What a saga does when a lock key it needs is held (or queued for) by another."""

    WAIT = "wait"
    """Queue durably, first come first served per key, until every key is free."""
    REJECT = "reject"
    """Refuse StartSaga with ABORTED, naming the key and its holder; nothing is stored."""


LockKeys = Callable[[Message], Iterable[str]]
"""Computes a saga's lock keys from its input, e.g. `lambda o: [f"customer:{o.customer_id}"]`."""


@dataclass(frozen=True, slots=True)
class Locks:
    """Semantic locks: resources a saga holds so that no other saga interleaves with it.

    `keys` is computed once, from the input, when the saga starts. The keys are
    taken together, all or nothing, before the stage holding `from_step` starts
    (before the first step when `from_step` is empty), and released in the commit
    that makes the saga COMPLETED, or FAILED after compensation; a saga that needs
    an operator keeps them. Under WAIT, `max_wait` (seconds) bounds the wait: past
    it the saga fails without starting the steps that needed the locks.
    """

    keys: LockKeys
    from_step: str = ""
    policy: LockPolicy = LockPolicy.WAIT
    max_wait: float | None = None


@dataclass(frozen=True, slots=True)
class SagaDefinition:
    """A saga type at one version: its input message, its steps in order, and optionally
    the output message it returns when it completes (`output_type`, built by `output`).

    `steps` is the definition as written, where a `Parallel` group is one stage;
    `all_steps` is every step flattened in declaration order (the order of the
    stored step rows), and `stages` gives each stage's positions in `all_steps`.
    """

    name: str
    version: int
    input_type: type[Message]
    steps: tuple[Step | Parallel, ...]
    description: str = ""
    check_input: InputCheck | None = None
    retry: RetryPolicy = field(default=DEFAULT_ACTION_RETRY)
    compensation_retry: RetryPolicy = field(default=DEFAULT_COMPENSATION_RETRY)
    deadline: float | None = None
    """Seconds a saga may stay RUNNING; past it, it stops and compensates (before its pivot)."""
    locks: Locks | None = None
    """Lock keys the saga holds while it runs; None for a saga that takes none."""
    output_type: type[Message] | None = None
    """The message a COMPLETED saga returns (packed in an Any), built by `output`."""
    output: OutputBuilder | None = None
    tracking: Tracking | None = None
    """Set for a tracked (choreographed) saga type, made by `tracked_saga`: what starts an
    instance, how events are correlated to it, and what a stuck instance leads to."""
    all_steps: tuple[Step, ...] = field(init=False, repr=False, compare=False)
    stages: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flat: list[Step] = []
        stages: list[tuple[int, ...]] = []
        for stage in self.steps:
            members = stage.steps if isinstance(stage, Parallel) else (stage,)
            stages.append(tuple(range(len(flat), len(flat) + len(members))))
            flat.extend(members)
        object.__setattr__(self, "all_steps", tuple(flat))
        object.__setattr__(self, "stages", tuple(stages))

    def step_named(self, name: str) -> Step:
        """The step called `name`; KeyError when the definition has none."""
        for step in self.all_steps:
            if step.name == name:
                return step
        raise KeyError(f"saga type {self.name!r} v{self.version} has no step {name!r}")

    def group_of(self, index: int) -> str:
        """The name of the Parallel group holding step `index`, or "" for a lone step."""
        for stage in self.steps:
            if isinstance(stage, Parallel) and any(s is self.all_steps[index] for s in stage.steps):
                return stage.name
        return ""

    def stage_of(self, index: int) -> int:
        """The position of the stage holding step `index`."""
        for position, members in enumerate(self.stages):
            if index in members:
                return position
        raise IndexError(index)

    @property
    def lock_stage(self) -> int | None:
        """The stage before which the saga's locks are taken, or None without locks."""
        if self.locks is None:
            return None
        if not self.locks.from_step:
            return 0
        names = [step.name for step in self.all_steps]
        return self.stage_of(names.index(self.locks.from_step))

    def lock_keys(self, saga_input: Message) -> tuple[str, ...]:
        """The saga's lock keys for this input: unique, in the one order every saga takes
        them in (sorted), so two sagas never wait for each other's keys in a cycle."""
        if self.locks is None:
            return ()
        return tuple(sorted(set(self.locks.keys(saga_input))))

    @property
    def pivot_stage(self) -> int | None:
        """The first stage holding a pivot (a step that cannot be undone and is not
        read-only), or None."""
        for position, members in enumerate(self.stages):
            if any(self.all_steps[i].is_pivot for i in members):
                return position
        return None

    def is_forward_only(self, index: int) -> bool:
        """True for steps after the pivot: they are retried, never compensated."""
        pivot = self.pivot_stage
        return pivot is not None and self.stage_of(index) > pivot

    def action_retry(self, step: Step) -> RetryPolicy:
        """The step's own retry policy, else the saga type's default."""
        return step.retry or self.retry

    def compensation_retry_of(self, step: Step) -> RetryPolicy:
        """The step's own compensation retry policy, else the saga type's default."""
        return step.compensation_retry or self.compensation_retry

    @property
    def participants(self) -> frozenset[str]:
        """Every participant name the definition's steps address."""
        return frozenset(step.participant for step in self.all_steps)
