"""The registered saga definitions, checked once when the orchestrator starts.

Every call a definition names is resolved against the protobuf descriptor pool
here, and every definition passes the load-time checks (its shape, and every
builder dry-run on default messages: orchestrator/core/definition_checks.py), so a
typo in a service or method name, a builder returning the wrong message or reading
a result that cannot exist yet stops start-up with a message naming the
definition and step instead of failing a saga at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from google.protobuf import any_pb2, json_format, struct_pb2
from google.protobuf.message import Message

from orchestrator.core.definition import SagaDefinition, Step, StepContext
from orchestrator.core.definition_checks import dry_run_builders, validate_definition
from orchestrator.core.errors import DefinitionError, UnknownSagaType
from orchestrator.core.records import SagaRecord, StepRecord
from orchestrator.core.resolved import ResolvedStep, resolve_call

logger = logging.getLogger(__name__)


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
                action=(
                    resolve_call(definition, step.name, step.action)
                    if step.action is not None
                    else None
                ),
                compensation=(
                    resolve_call(definition, step.name, step.compensation)
                    if step.compensation is not None
                    else None
                ),
                completion_type=_result_type(step),
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
    def called_participants(self) -> frozenset[str]:
        """The participants some step calls (an action or a compensation): only those
        need an address. A tracked saga's observed step is never called, unless a rescue
        has a compensation call to make on it."""
        return frozenset(
            step.participant
            for definition in self._by_key.values()
            for step in definition.all_steps
            if step.action is not None or step.compensation is not None
        )

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
                result_type = self.resolved_step(definition, step.name).result_type
                results[step.name] = result_type.FromString(record.result)
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


def _result_type(step: Step) -> type[Message] | None:
    """The stored result of an asynchronous step is its completion's message; of an
    observed step, its completing event's data (a Struct)."""
    if step.completion is not None:
        return step.completion.result_type
    if step.observed is not None:
        return struct_pb2.Struct
    return None


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
