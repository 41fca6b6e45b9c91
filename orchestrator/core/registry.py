"""The registered saga definitions, checked once when the orchestrator starts.

Every call a definition names is resolved against the protobuf descriptor pool
here, and every request builder is dry-run on default messages, so a typo in a
service or method name, a builder returning the wrong message or reading a
result that cannot exist yet stops start-up with a message naming the
definition and step instead of failing a saga at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence

from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from orchestrator.core.definition import Parallel, SagaDefinition, Step, StepContext
from orchestrator.core.errors import DefinitionError, UnknownSagaType
from orchestrator.core.records import SagaRecord, StepRecord
from orchestrator.core.resolved import ResolvedCall, ResolvedStep, resolve_call

logger = logging.getLogger(__name__)

DRY_RUN_SAGA_ID = "00000000-0000-4000-8000-000000000000"
"""The saga id builders see when they are dry-run at load time."""


class Registry:
    """Saga definitions by type and version; the latest version starts new sagas."""

    def __init__(self, definitions: Iterable[SagaDefinition]) -> None:
        self._by_key: dict[tuple[str, int], SagaDefinition] = {}
        self._resolved: dict[tuple[str, int, str], ResolvedStep] = {}
        for definition in definitions:
            self._add(definition)

    def _add(self, definition: SagaDefinition) -> None:
        key = (definition.name, definition.version)
        if key in self._by_key:
            raise DefinitionError(
                f"saga type {definition.name!r} v{definition.version} is registered twice"
            )
        validate_definition(definition)
        resolved = {
            step.name: ResolvedStep(
                action=resolve_call(definition, step.name, step.action),
                compensation=(
                    resolve_call(definition, step.name, step.compensation)
                    if step.compensation is not None
                    else None
                ),
            )
            for step in definition.all_steps
        }
        dry_run_builders(definition, resolved)
        self._by_key[key] = definition
        for name, step in resolved.items():
            self._resolved[(definition.name, definition.version, name)] = step

    @property
    def saga_types(self) -> list[str]:
        """Registered type names, sorted."""
        return sorted({name for name, _ in self._by_key})

    @property
    def participants(self) -> frozenset[str]:
        """Every participant name any definition addresses."""
        return frozenset(p for d in self._by_key.values() for p in d.participants)

    @property
    def definitions(self) -> list[SagaDefinition]:
        """Every registered definition, by type name, then version."""
        return [self._by_key[key] for key in sorted(self._by_key)]

    @property
    def takes_locks(self) -> bool:
        """Whether some registered definition declares lock keys: only then can a saga
        here wait for a key, and releases are worth listening for."""
        return any(d.locks is not None for d in self._by_key.values())

    def has(self, saga_type: str, version: int) -> bool:
        """True when this exact version of the type is registered."""
        return (saga_type, version) in self._by_key

    def latest(self, saga_type: str) -> SagaDefinition:
        """The newest version of a type; UnknownSagaType lists what exists."""
        versions = [v for (name, v) in self._by_key if name == saga_type]
        if not versions:
            known = ", ".join(self.saga_types) or "none"
            raise UnknownSagaType(f"unknown saga type {saga_type!r} (registered: {known})")
        return self._by_key[(saga_type, max(versions))]

    def get(self, saga_type: str, version: int) -> SagaDefinition:
        """One exact version; DefinitionError when it is no longer registered."""
        try:
            return self._by_key[(saga_type, version)]
        except KeyError:
            raise DefinitionError(
                f"saga type {saga_type!r} v{version} is not registered in this orchestrator"
            ) from None

    def resolved_step(self, definition: SagaDefinition, step_name: str) -> ResolvedStep:
        """The resolved calls of one step of a registered definition."""
        return self._resolved[(definition.name, definition.version, step_name)]

    def build_request(
        self,
        definition: SagaDefinition,
        saga: SagaRecord,
        steps: Sequence[StepRecord],
        index: int,
        *,
        compensating: bool,
        saga_input: Message | None = None,
    ) -> Message:
        """Step `index`'s request, built from the saga input and the stored results.

        `saga_input`, the input already decoded (`saga_input()`), spares decoding the
        stored payload again; the builder gets a copy of its own."""
        results = self.stored_results(definition, steps)
        name = definition.all_steps[index].name
        context = StepContext(
            saga_id=saga.saga_id,
            input=self._input_for_builder(definition, saga, saga_input),
            results=results,
            result=results.get(name),
        )
        return self.resolved_step(definition, name).build_request(
            name, context, compensating=compensating
        )

    def stored_results(
        self, definition: SagaDefinition, steps: Sequence[StepRecord]
    ) -> dict[str, Message]:
        """Each step's stored reply, decoded as its action's response message."""
        results: dict[str, Message] = {}
        for step, record in zip(definition.all_steps, steps, strict=True):
            if record.result is not None:
                response_type = self.resolved_step(definition, step.name).action.response_type
                results[step.name] = response_type.FromString(record.result)
        return results

    def saga_input(self, definition: SagaDefinition, saga: SagaRecord) -> Message:
        """The saga's input message, decoded from its stored payload (JSON)."""
        return json_format.ParseDict(saga.payload, definition.input_type())

    def _input_for_builder(
        self, definition: SagaDefinition, saga: SagaRecord, saga_input: Message | None
    ) -> Message:
        # Decoding JSON costs about 300 times a copy, and a copy keeps a builder that
        # changes its input from changing the next builder's.
        if saga_input is None:
            return self.saga_input(definition, saga)
        private = definition.input_type()
        private.CopyFrom(saga_input)
        return private

    def build_output(
        self,
        definition: SagaDefinition,
        saga: SagaRecord,
        steps: Sequence[StepRecord],
        saga_input: Message | None = None,
    ) -> bytes | None:
        """A COMPLETED saga's output as a serialized google.protobuf.Any; None when the
        definition declares no output. `saga_input` as for `build_request`."""
        if definition.output is None:
            return None
        context = StepContext(
            saga_id=saga.saga_id,
            input=self._input_for_builder(definition, saga, saga_input),
            results=self.stored_results(definition, steps),
        )
        packed = any_pb2.Any()
        packed.Pack(definition.output(context))
        return packed.SerializeToString()


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
    _check_pivot(where, definition)
    _check_locks(where, definition)


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


def _check_pivot(where: str, definition: SagaDefinition) -> None:
    """A step that cannot be undone must never be followed by, or run beside, one that may
    fail for good: that failure would have to undo it.

    The first stage holding a step without a compensation is the pivot stage. Every
    step in a later stage must be `retriable` (it succeeds if asked often enough, or
    the saga waits for an operator). In the pivot stage, a member without a
    compensation may run beside other members only if they are retriable.
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
                        f"failure here could not undo {pivot.name!r}"
                    )
            continue
        irreversible = [step for step in members if step.compensation is None]
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
            _dry_run(definition, step, calls.action, available, result=None, compensating=False)
            if calls.compensation is not None:
                _dry_run(
                    definition,
                    step,
                    calls.compensation,
                    available,
                    result=calls.action.response_type(),
                    compensating=True,
                )
        for step in steps:
            available[step.name] = resolved[step.name].action.response_type()
    _dry_run_output(definition, available)


def _dry_run_output(definition: SagaDefinition, available: Mapping[str, Message]) -> None:
    """Call the output builder on default replies of every step; check what it returns."""
    if definition.output is None:
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
    if type(output) is not definition.output_type:
        returned = "None" if output is None else type(output).__name__
        assert definition.output_type is not None
        raise DefinitionError(
            f"{where}: the output builder returned {returned}, but output_type is "
            f"{definition.output_type.DESCRIPTOR.full_name}"
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


def check_unfinished_versions(
    unfinished: Mapping[tuple[str, int], int], registry: Registry
) -> None:
    """Refuse to run when unfinished sagas need a definition version that is not registered.

    A saga finishes on the version it started with; without it, resuming would
    fail every such saga, so the orchestrator stops before serving instead.
    `unfinished` maps (saga type, version) to how many sagas are running or
    compensating on it (Store.unfinished_definitions).
    """
    missing = sorted(
        (key, count) for key, count in unfinished.items() if not registry.has(*key) and count
    )
    if not missing:
        return
    needs = "; ".join(
        f"{saga_type} v{version} ({count} saga{'s' if count != 1 else ''})"
        for (saga_type, version), count in missing
    )
    raise DefinitionError(
        f"unfinished sagas need saga definitions that are not registered: {needs}. "
        "Keep every version that still has running or compensating sagas in the "
        "definitions until they finish."
    )
