"""The load-time checks of a saga definition: its shape, and a dry run of its builders.

`validate_definition` rejects shapes the engine could not run correctly (names,
types, a step that cannot be undone followed by one that may fail for good, lock
declarations); `dry_run_builders` calls every request, compensation and output
builder on default messages and checks what it reads and returns. The registry runs
both when a definition is registered, so a mistake stops start-up, not a saga.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from orchestrator.core.definition import Parallel, SagaDefinition, Step, StepContext
from orchestrator.core.errors import DefinitionError
from orchestrator.core.resolved import ResolvedCall, ResolvedStep
from orchestrator.core.tracking import OnStuck

logger = logging.getLogger(__name__)

DRY_RUN_SAGA_ID = "00000000-0000-4000-8000-000000000000"
"""The saga id builders see when they are dry-run at load time."""


def validate_definition(definition: SagaDefinition) -> None:
    """Reject definitions the engine could not run correctly (their shape, not their calls).

    Step and group names share one namespace because a step's name keys its
    stored row and its idempotency keys, and a group's name labels its steps.
    """
    where = f"saga type {definition.name!r} v{definition.version}"
    if not definition.name or not definition.name.replace("_", "").isalnum():
        raise DefinitionError(f"{where}: the name must be letters, digits and underscores")
    if definition.version < 1:
        raise DefinitionError(f"{where}: the version must be 1 or more")
    if not isinstance(definition.input_type, type) or not issubclass(
        definition.input_type, Message
    ):
        raise DefinitionError(f"{where}: input_type must be a protobuf message class")
    if (definition.output_type is None) != (definition.output is None):
        raise DefinitionError(f"{where}: output_type and output (its builder) go together")
    if definition.output_type is not None and not (
        isinstance(definition.output_type, type) and issubclass(definition.output_type, Message)
    ):
        raise DefinitionError(f"{where}: output_type must be a protobuf message class")
    if not definition.steps:
        raise DefinitionError(f"{where}: a saga needs at least one step")
    seen: set[str] = set()

    def claim(name: str, kind: str) -> None:
        if not name or name in seen:
            raise DefinitionError(f"{where}: {kind} name {name!r} is empty or repeated")
        seen.add(name)

    for position, stage in enumerate(definition.steps):
        if isinstance(stage, Parallel):
            claim(stage.name, "parallel group")
            if not stage.steps:
                raise DefinitionError(f"{where}: parallel group {stage.name!r} has no steps")
            for member in stage.steps:
                if not isinstance(member, Step):
                    raise DefinitionError(
                        f"{where}: parallel group {stage.name!r} holds a "
                        f"{type(member).__name__}; its members must be Steps (groups do not nest)"
                    )
            members: tuple[Step, ...] = stage.steps
        elif isinstance(stage, Step):
            members = (stage,)
        else:
            raise DefinitionError(
                f"{where}: stage {position + 1} is a {type(stage).__name__}, "
                "not a Step or a Parallel group"
            )
        for step in members:
            claim(step.name, "step")
            _validate_step(where, step)
    _check_kinds(where, definition)
    if definition.tracking is not None:
        check_tracking(where, definition)
        return
    _check_pivot(where, definition)
    _check_locks(where, definition)


def _check_kinds(where: str, definition: SagaDefinition) -> None:
    """Observed steps belong to tracked types, and only there; commanded steps have an
    action. A type is one or the other: its instances are moved by commands the
    orchestrator sends or by events its services publish, never both."""
    steps = definition.all_steps
    observed = [s.name for s in steps if s.observed is not None]
    commanded = [s.name for s in steps if s.observed is None]
    if definition.tracking is None:
        if observed:
            raise DefinitionError(
                f"{where}: step(s) {', '.join(observed)} are observed (TrackedStep) but the "
                "type is not tracked; build it with tracked_saga(...)"
            )
        for step in steps:
            if step.action is None:
                raise DefinitionError(
                    f"{where}, step {step.name!r}: an orchestrated step needs an action "
                    "(only a TrackedStep of a tracked saga type has none)"
                )
        return
    for step in steps:
        if step.observed is not None and (
            step.action is not None or step.completion is not None or step.read_only
        ):
            raise DefinitionError(
                f"{where}, step {step.name!r}: an observed step has no action, completion "
                "or read_only: its events say what happened"
            )
    if commanded:
        raise DefinitionError(
            f"{where}: tracked and orchestrated steps do not mix in one definition: "
            f"{', '.join(commanded)} are orchestrated (use TrackedStep for every step of "
            "a tracked_saga, or make an orchestrated SagaDefinition)"
        )


def check_tracking(where: str, definition: SagaDefinition) -> None:
    """A tracked type's own rules: exactly one correlation source; every event type
    once across its start, complete, fail and undo events; windows positive; at most
    one way for the orchestrator to undo a step; a Struct input; no Parallel groups,
    deadline, locks or output (a tracked flow is the services', in a line); and under
    on_stuck COMPENSATE every step before the last undoable."""
    tracking = definition.tracking
    assert tracking is not None
    correlation = tracking.correlation
    if bool(correlation.extension) == bool(correlation.data_path):
        raise DefinitionError(
            f"{where}: the correlation names exactly one of extension= (a CloudEvents "
            "extension attribute) or data_path= (a dotted path into the event's data)"
        )
    if not tracking.started_by:
        raise DefinitionError(f"{where}: started_by names no event type")
    if definition.input_type is not struct_pb2.Struct:
        raise DefinitionError(f"{where}: a tracked type's input is google.protobuf.Struct")
    extras = [
        name
        for name, present in (
            ("Parallel groups", any(isinstance(s, Parallel) for s in definition.steps)),
            ("a deadline", definition.deadline is not None),
            ("locks", definition.locks is not None),
            ("an output", definition.output is not None),
        )
        if present
    ]
    if extras:
        raise DefinitionError(f"{where}: a tracked type has no {', '.join(extras)}")
    seen: dict[str, str] = {}

    def claim(event_type: str, role: str) -> None:
        if not event_type:
            raise DefinitionError(f"{where}: an empty event type ({role})")
        if event_type in seen:
            raise DefinitionError(
                f"{where}: event type {event_type!r} is declared twice ({seen[event_type]} "
                f"and {role}); each event type has one meaning in a tracked type"
            )
        seen[event_type] = role

    for event_type in tracking.started_by:
        claim(event_type, "started_by")
    last = len(definition.all_steps) - 1
    for index, step in enumerate(definition.all_steps):
        observed = step.observed
        assert observed is not None
        here = f"{where}, step {step.name!r}"
        if not observed.completes_on:
            raise DefinitionError(f"{here}: completes_on names no event type")
        for role, types in (
            ("completes_on", observed.completes_on),
            ("fails_on", observed.fails_on),
            ("compensated_on", observed.compensated_on),
        ):
            for event_type in types:
                claim(event_type, f"{step.name} {role}")
        if not observed.within > 0:
            raise DefinitionError(f"{here}: within must be positive, got {observed.within!r}")
        if step.compensation is not None and observed.compensation_event:
            raise DefinitionError(
                f"{here}: compensation and compensation_event both say how to undo it; keep one"
            )
        undoable = bool(step.compensation or observed.compensation_event or observed.compensated_on)
        if tracking.on_stuck is OnStuck.COMPENSATE and index < last and not undoable:
            raise DefinitionError(
                f"{here}: on_stuck=OnStuck.COMPENSATE undoes the completed steps, but this "
                "one declares no compensation, compensation_event or compensated_on"
            )


def _check_locks(where: str, definition: SagaDefinition) -> None:
    """The lock declaration names a real step and a positive wait, and its key builder
    is dry-run on a default input like the request builders: it must give strings."""
    locks = definition.locks
    if locks is None:
        return
    if locks.from_step and locks.from_step not in {s.name for s in definition.all_steps}:
        raise DefinitionError(f"{where}: locks are taken from step {locks.from_step!r}, not a step")
    if locks.max_wait is not None and locks.max_wait <= 0:
        raise DefinitionError(f"{where}: the maximum lock wait must be positive")
    try:
        keys = list(locks.keys(definition.input_type()))
    except Exception as error:
        # Like request builders, a key builder may rightly refuse default values.
        logger.debug("%s: the lock key builder refused default values: %r", where, error)
        return
    for key in keys:
        if not isinstance(key, str) or not key:
            raise DefinitionError(
                f"{where}: the lock key builder must return non-empty strings, gave {key!r}"
            )


def _validate_step(where: str, step: Step) -> None:
    if not step.participant:
        raise DefinitionError(f"{where}, step {step.name!r}: no participant named")
    if step.timeout <= 0:
        raise DefinitionError(f"{where}, step {step.name!r}: the timeout must be positive")
    if step.read_only and step.compensation is not None:
        raise DefinitionError(
            f"{where}, step {step.name!r}: it is read_only, so it has nothing to undo; "
            f"drop its compensation ({step.compensation.service}.{step.compensation.method}) "
            "or, if the action does change something, drop read_only=True"
        )
    if step.completion is not None:
        _validate_completion(f"{where}, step {step.name!r}", step)


def _validate_completion(where: str, step: Step) -> None:
    """An asynchronous step's wait must be bounded, and its result a message type."""
    completion = step.completion
    assert completion is not None
    if not (
        isinstance(completion.result_type, type) and issubclass(completion.result_type, Message)
    ):
        raise DefinitionError(f"{where}: result_type must be a protobuf message class")
    if completion.timeout <= 0:
        raise DefinitionError(f"{where}: the completion timeout must be positive")
    heartbeat = completion.heartbeat_timeout
    if heartbeat is not None and not 0 < heartbeat <= completion.timeout:
        raise DefinitionError(
            f"{where}: heartbeat_timeout must be positive and at most the timeout"
            f" ({completion.timeout:g}s), got {heartbeat:g}s"
        )


def _check_pivot(where: str, definition: SagaDefinition) -> None:
    """A step that cannot be undone must never be followed by, or run beside, one that may
    fail for good: that failure would have to undo it.

    The first stage holding a pivot (a step without a compensation that is not
    read-only) is the pivot stage. Every step in a later stage must be `retriable`
    (it succeeds if asked often enough, or the saga waits for an operator). In the
    pivot stage, a pivot may run beside other members only if they are retriable.
    A read-only step changes nothing, so it forces nothing on the steps around it.
    """
    pivot: Step | None = None
    for stage in definition.steps:
        members = stage.steps if isinstance(stage, Parallel) else (stage,)
        if pivot is not None:
            for step in members:
                if not step.retriable:
                    raise DefinitionError(
                        f"{where}, step {step.name!r}: it runs after step {pivot.name!r}, "
                        "which has no compensation, so it must be retriable=True: a "
                        f"failure here could not undo {pivot.name!r} (if {pivot.name!r} "
                        "changes nothing, declare it read_only=True instead)"
                    )
            continue
        irreversible = [step for step in members if step.is_pivot]
        if not irreversible:
            continue
        pivot = irreversible[0]
        for step in irreversible:
            for sibling in members:
                if sibling is not step and not sibling.retriable:
                    raise DefinitionError(
                        f"{where}, step {step.name!r}: it has no compensation, so its "
                        f"siblings in parallel group {stage.name!r} must be retriable=True, "
                        f"but {sibling.name!r} is not: its failure could not undo "
                        f"{step.name!r}"
                    )


class _EarlierResults(Mapping[str, Message]):
    """The results a builder may read in the dry run; remembers reads of any other step.

    Only `[]` (and so StepContext.result_of) records a miss: `get` and `in` are
    how a builder asks whether a result exists, which is not a wrong reference.
    """

    def __init__(self, available: Mapping[str, Message]) -> None:
        self._available = dict(available)
        self.missed: list[str] = []

    def __getitem__(self, step: str) -> Message:
        try:
            return self._available[step]
        except KeyError:
            self.missed.append(step)
            raise

    def __iter__(self) -> Iterator[str]:
        return iter(self._available)

    def __len__(self) -> int:
        return len(self._available)

    def __contains__(self, step: object) -> bool:
        return step in self._available

    def get(self, step: str, default: Message | None = None) -> Message | None:  # type: ignore[override]
        return self._available.get(step, default)


def dry_run_builders(definition: SagaDefinition, resolved: Mapping[str, ResolvedStep]) -> None:
    """Call every request builder on default messages and check what it reads and returns.

    Each action builder sees a default saga input and default replies of the
    steps in earlier stages only; each compensation builder also sees a default
    reply of its own action as `result`. A read of any other step's result, or a
    request of the wrong type, is a DefinitionError. Any other exception is
    ignored: builders may rightly refuse default values a real saga never has.
    """
    available: dict[str, Message] = {}
    for stage in definition.stages:
        steps = [definition.all_steps[index] for index in stage]
        for step in steps:
            calls = resolved[step.name]
            if calls.action is not None:
                _dry_run(definition, step, calls.action, available, result=None, compensating=False)
            if calls.compensation is not None:
                _dry_run(
                    definition,
                    step,
                    calls.compensation,
                    available,
                    result=calls.result_type(),
                    compensating=True,
                )
        for step in steps:
            available[step.name] = resolved[step.name].result_type()
    _dry_run_output(definition, available)


def _dry_run_output(definition: SagaDefinition, available: Mapping[str, Message]) -> None:
    """Call the output builder on default replies of every step; check what it returns."""
    output_type = definition.output_type
    if definition.output is None or output_type is None:  # validated: both or neither
        return
    where = f"saga type {definition.name!r} v{definition.version}"
    results = _EarlierResults(available)
    context = StepContext(saga_id=DRY_RUN_SAGA_ID, input=definition.input_type(), results=results)
    try:
        output = definition.output(context)
    except KeyError:
        if results.missed:
            raise DefinitionError(
                f"{where}: the output builder reads the result of step "
                f"{results.missed[-1]!r}, which does not exist"
            ) from None
        return
    except Exception as error:
        logger.debug("%s: the output builder refused default values: %r", where, error)
        return
    if type(output) is not output_type:
        returned = "None" if output is None else type(output).__name__
        raise DefinitionError(
            f"{where}: the output builder returned {returned}, but output_type is "
            f"{output_type.DESCRIPTOR.full_name}"
        )


def _dry_run(
    definition: SagaDefinition,
    step: Step,
    call: ResolvedCall,
    available: Mapping[str, Message],
    *,
    result: Message | None,
    compensating: bool,
) -> None:
    where = f"saga type {definition.name!r} v{definition.version}, step {step.name!r}"
    builder = "compensation builder" if compensating else "request builder"
    results = _EarlierResults(available)
    context = StepContext(
        saga_id=DRY_RUN_SAGA_ID, input=definition.input_type(), results=results, result=result
    )
    try:
        request = call.call.request(context)
    except KeyError as error:
        if results.missed:
            message = _bad_read(where, definition, step, results.missed[-1], builder)
            raise DefinitionError(message) from None
        logger.debug("%s: the %s refused default values: %r", where, builder, error)
        return
    except Exception as error:
        logger.debug("%s: the %s refused default values: %r", where, builder, error)
        return
    if type(request) is not call.request_type:
        returned = "None" if request is None else type(request).__name__
        raise DefinitionError(
            f"{where}: the {builder} returned {returned}, but {call.call.service}."
            f"{call.call.method} takes {call.request_type.DESCRIPTOR.full_name}"
        )


def _bad_read(where: str, definition: SagaDefinition, step: Step, read: str, builder: str) -> str:
    if read == step.name and builder == "compensation builder":
        return (
            f"{where}: the {builder} reads the step's own result through results; "
            "use ctx.result (None when the action's reply was never received)"
        )
    if read not in {s.name for s in definition.all_steps}:
        return f"{where}: the {builder} reads the result of step {read!r}, which does not exist"
    return f"{where}: the {builder} reads the result of step {read!r}, which does not run before it"
